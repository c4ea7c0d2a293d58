#!/usr/bin/env bash
# sanitize_kernels.sh's own logic, on a machine without a GPU: compute-sanitizer, nvidia-smi and
# the test binary are stand-ins on PATH (the real run is gpu-check's kernels_sanitized step).
# Checks: each tool runs the kernels' GPU tests with the caching allocator off and only our
# kernels instrumented; a compute-sanitizer that refuses the kernel filter is rerun without it; a
# reported hazard fails the script and its report is printed; a machine whose runtime refuses
# the tool, or one without it, exits 77.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/sanitize_kernels.sh"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bin" "$t/build/bin" "$t/logs"
cat >"$t/bin/nvidia-smi" <<'SH'
#!/bin/sh
echo "GPU 0: Stand-in"
SH
cat >"$t/build/bin/coatnet_tests" <<'SH'
#!/bin/sh
echo "$*" >>"$CALLS.tests"
echo "caching=${PYTORCH_NO_CUDA_MEMORY_CACHING:-unset}" >>"$CALLS.tests"
echo "[  PASSED  ] 3 tests."
SH
cat >"$t/bin/compute-sanitizer" <<'SH'
#!/bin/bash
echo "$*" >>"$CALLS"
tool=memcheck
for ((i = 1; i <= $#; i++)); do [[ ${!i} == --tool ]] && { j=$((i + 1)); tool=${!j}; }; done
if [[ $MODE == nofilter && "$*" == *--kernel-name* ]]; then
  echo "Unrecognized option '--kernel-name'"; exit 1
fi
if [[ $MODE == unsupported ]]; then
  echo "========= COMPUTE-SANITIZER"
  echo "========= Error: Device not supported. Please refer to the documentation."; exit 1
fi
echo "========= COMPUTE-SANITIZER"
while [[ $1 != */coatnet_tests ]]; do shift; done
"$@"
if [[ $MODE == race && $tool == racecheck ]]; then
  echo "========= Error: Race reported between Write access at bn_gelu_reduce_kernel+0x1a0"
  echo "========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)"; exit 3
fi
[[ $tool == racecheck ]] && echo "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)" ||
  echo "========= ERROR SUMMARY: 0 errors"
SH
chmod +x "$t/bin/"* "$t/build/bin/coatnet_tests"
fail() { echo "FAIL: $*"; exit 1; }
run() {  # MODE -> output in $t/out, exit status in $rc
  rm -f "$t/calls"*
  set +e
  PATH="$t/bin:$PATH" MODE=$1 CALLS="$t/calls" SANITIZE_LOG_DIR="$t/logs" bash "$script" "$t/build" >"$t/out" 2>&1
  rc=$?
  set -e
}

run clean
((rc == 0)) || { cat "$t/out"; fail "clean run exited $rc"; }
for tool in memcheck racecheck synccheck; do
  grep -q "^$tool: .*SUMMARY: 0 .*tests: \[  PASSED  \] 3 tests" "$t/out" || { cat "$t/out"; fail "no $tool line"; }
  grep -q -- "--tool $tool .*--kernel-name kns=coatnet .*coatnet_tests --gtest_filter=.*BnGeluKernel.MatchesTheReferenceOnGpu" "$t/calls" ||
    { cat "$t/calls"; fail "$tool not run on the kernels' tests with the kernel filter"; }
done
[[ $(grep -c 'caching=1' "$t/calls.tests") == 3 ]] || fail "the caching allocator was not off in every run"
grep -q 'BnGeluKernel.MatchesTheReferenceOnGpu' "$t/calls.tests" && grep -q 'BatchPrep.KernelMatchesTheCompositeOnGpu' "$t/calls.tests" ||
  fail "not every kernel's GPU test runs"

run nofilter
((rc == 0)) || { cat "$t/out"; fail "a refused filter should be retried without it (exit $rc)"; }
[[ $(grep -c 'the kernel filter was not taken' "$t/out") == 3 ]] || { cat "$t/out"; fail "no retry notice"; }
[[ $(grep -vc -- '--kernel-name' "$t/calls") == 3 ]] || { cat "$t/calls"; fail "no run without the filter"; }

run race
((rc == 1)) || { cat "$t/out"; fail "a hazard should fail it (exit $rc)"; }
grep -q '^racecheck: RACECHECK SUMMARY: 1 hazard displayed (1 error' "$t/out" || { cat "$t/out"; fail "no hazard summary"; }
grep -q 'Race reported between Write access at bn_gelu_reduce_kernel' "$t/out" || fail "the report is not printed"
grep -q '^memcheck: ERROR SUMMARY: 0 errors' "$t/out" || fail "memcheck's line is missing"

# A runtime that refuses the tool (gVisor): skipped with the reason, not a kernel's failure.
run unsupported
((rc == 77)) || { cat "$t/out"; fail "a refused device should skip (exit $rc)"; }
grep -q '^memcheck: compute-sanitizer does not run here: .*Device not supported' "$t/out" ||
  { cat "$t/out"; fail "no reason for the skip"; }

rm "$t/bin/compute-sanitizer"
PATH="$t/bin:/usr/bin:/bin" bash "$script" "$t/build" >"$t/out" 2>&1 && rc=0 || rc=$?
((rc == 77)) && grep -q 'skipped: compute-sanitizer not found' "$t/out" || { cat "$t/out"; fail "without compute-sanitizer: exit $rc"; }
echo "sanitize_kernels: ok"
