#!/usr/bin/env bash
# libFuzzer on the parsers of outside bytes (tests/fuzz/fuzz_*.cpp), with AddressSanitizer and
# UBSan: `build` makes build-fuzz/ with clang (LibTorch as the main build found it); `run NAME
# [SECONDS]` fuzzes one harness from its seed corpus (tests/fuzz/corpus/NAME, never written to)
# for a bounded time. A crash, a sanitizer report, a timeout or running out of memory fails it,
# and the input that did it is printed (and kept in $COATNET_FUZZ_ARTIFACTS when set).
# usage: fuzz.sh build | fuzz.sh run NAME [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/fuzz"
out="$root/build-fuzz"
case ${1:-} in
build)
  command -v clang++ >/dev/null || { echo "SKIP: no clang++ (apt-get install clang)"; exit 77; }
  torch_dir=$(sed -n 's/^Torch_DIR:PATH=//p' "$root/build/CMakeCache.txt" 2>/dev/null || true)
  [[ -n $torch_dir ]] || { echo "fuzz.sh: build/ is not configured (run launch/setup.sh)" >&2; exit 1; }
  if [[ ! -f $out/build.ninja ]]; then
    CC=clang CXX=clang++ cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCOATNET_FUZZ=ON -DTorch_DIR="$torch_dir" >"$root/build/fuzz-configure.log" 2>&1 ||
      { cat "$root/build/fuzz-configure.log"; exit 1; }
  fi
  ninja -C "$out" coatnet_fuzzers
  ;;
run)
  name=$2 seconds=${3:-20}
  bin="$out/bin/fuzz_$name"
  [[ -x $bin ]] || { echo "SKIP: $bin not built (the fuzz build needs clang)"; exit 77; }
  work=$(mktemp -d /tmp/coatnet_fuzz.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/corpus" "$work/artifacts"
  # LibTorch's and HDF5's process-lifetime allocations are not leaks of ours; an impossible
  # malloc returns null, as it does outside the sanitizer (HDF5 then reports an error).
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:suppressions=$here/asan.supp
  export UBSAN_OPTIONS=print_stacktrace=1
  set +e
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "$here/corpus/$name" >"$work/log" 2>&1
  rc=$?
  set -e
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$work/log" || true
  if ((rc != 0)); then
    tail -60 "$work/log"
    for a in "$work"/artifacts/*; do
      [[ -f $a ]] || continue
      echo "input that failed ($a, base64):"
      base64 -w 100 "$a" | head -40
      [[ -z ${COATNET_FUZZ_ARTIFACTS:-} ]] || cp "$a" "$COATNET_FUZZ_ARTIFACTS/"
    done
    echo "FAIL: fuzz_$name"
    exit 1
  fi
  echo "PASS: fuzz_$name, $seconds s"
  ;;
*)
  echo "usage: fuzz.sh build | fuzz.sh run NAME [SECONDS]" >&2
  exit 2
  ;;
esac
