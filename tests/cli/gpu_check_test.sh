#!/usr/bin/env bash
# launch/gpu-check.sh where there is no GPU (CI): it says so, names what it would run and exits
# 77 without creating anything; --help and a bad argument behave as every command's do. On a
# machine with a GPU the check itself runs there instead (exit 77 here: skipped, with why).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
check="$root/launch/gpu-check.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "skipped: nvidia-smi is here, so gpu-check.sh would run the whole check; run it by hand"
  exit 77
fi
out=$(mktemp -d /tmp/gpu-check-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
msg=$("$check" --skip-build --out "$out/results" 2>&1)
rc=$?
[[ $rc == 77 ]] || fail "without a GPU: expected exit 77, got $rc: $msg"
for what in "no GPU here" "NCCL" "kernels of src/cuda" "compute-sanitizer" "timm eager" "launching operators"; do
  grep -q "$what" <<<"$msg" || fail "the message does not name '$what': $msg"
done
[[ ! -e $out/results ]] || fail "created its --out directory without a GPU"
"$check" --help | grep -q -- "--baseline DIR" || fail "--help does not list --baseline"
msg=$("$check" --bogus 2>&1)
rc=$?
[[ $rc == 2 ]] || fail "a bad argument: expected exit 2, got $rc"
grep -q "unknown argument '--bogus'" <<<"$msg" || fail "no message naming --bogus: $msg"
# Every row that docs/GPU.md's plan for the next GPU names in --only is one gpu-check has (a
# misspelt name is only listed as skipped there, and the loan is spent).
plan=$(sed -n '/^## The next borrowed GPU/,/^## /p' "$root/docs/GPU.md" | tr -d '\n' |
       grep -o -- '--only *[a-z0-9_,]*' | sed 's/--only *//' | tr ',' '\n' | sort -u)
# (At least 5: a plan's --only lists that this parse no longer finds would pass unchecked.)
[[ $(wc -l <<<"$plan") -ge 5 ]] || fail "docs/GPU.md's plan names too few rows: $plan"
for name in $plan; do
  grep -qE "(test_step|bench) $name " "$check" || fail "docs/GPU.md's plan names '$name', which gpu-check.sh does not have"
done
echo "PASS: gpu-check without a GPU"
