#!/usr/bin/env bash
# Every program and plugin lists libstdc++ before any LibTorch library among its NEEDED entries
# (CMakeLists.txt: some LibTorch builds export their own copies of C++ library functions, and
# the first library in load order that defines a symbol answers for it).
# usage: link_order.sh FILE...
set -euo pipefail
for f in "$@"; do
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  torch_at=$(grep -n -m1 -E '^lib(torch|c10)' <<<"$needed" | cut -d: -f1 || true)
  [[ -n $torch_at ]] || continue  # does not link LibTorch
  stdcxx_at=$(grep -n -m1 '^libstdc++' <<<"$needed" | cut -d: -f1 || true)
  if [[ -z $stdcxx_at || $stdcxx_at -gt $torch_at ]]; then
    echo "FAIL: $f loads $(sed -n "${torch_at}p" <<<"$needed") (NEEDED #$torch_at) before" \
      "libstdc++ (#${stdcxx_at:-none}): LibTorch's copies of C++ library functions would answer" \
      "for libstdc++'s" >&2
    exit 1
  fi
  echo "ok: $(basename "$f"): libstdc++ #$stdcxx_at, LibTorch from #$torch_at"
done
echo "PASS: link order"
