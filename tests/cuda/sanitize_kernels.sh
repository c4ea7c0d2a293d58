#!/usr/bin/env bash
# The CUDA kernels' GPU tests under NVIDIA's compute-sanitizer, one tool after another:
#   memcheck   out-of-bounds and misaligned global and shared accesses. PyTorch's caching
#              allocator is off (PYTORCH_NO_CUDA_MEMORY_CACHING=1), so that every tensor is an
#              allocation of its own and a read past a tensor's end is seen, not hidden in a
#              cached block; a partial tile that reads past the last row would pass the
#              comparison with the reference (the row is masked) and fail here;
#   racecheck  shared-memory hazards: two threads touching the same word with no barrier
#              between them (the CPU emulation runs the threads serially and cannot see one);
#   synccheck  barriers that not every thread of the block or warp reaches.
# Only this project's kernels (namespace coatnet::cuda) are instrumented: ATen's, cuBLAS's and
# cuDNN's run as usual, which keeps racecheck to seconds.
#   sanitize_kernels.sh BUILD_DIR [--tools memcheck,racecheck,synccheck]
# Prints one "<tool>: ... SUMMARY ..." line per tool; exits 1 when a tool reports an error (its
# log, sanitize-<tool>.log, is printed), 77 without compute-sanitizer or a GPU.
set -uo pipefail
build=${1:?usage: sanitize_kernels.sh BUILD_DIR [--tools LIST]}
tools=memcheck,racecheck,synccheck
[[ ${2:-} == --tools ]] && tools=${3:?--tools needs a list}
logs=${SANITIZE_LOG_DIR:-$PWD}
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[[ -n $sanitizer ]] || { echo "sanitize_kernels: skipped: compute-sanitizer not found (CUDA toolkit)"; exit 77; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 ||
  { echo "sanitize_kernels: skipped: no GPU visible"; exit 77; }
tests="$build/bin/coatnet_tests"
[[ -x $tests ]] || { echo "sanitize_kernels: $tests not found (build the project first)" >&2; exit 2; }
filter='BatchPrep.KernelMatchesTheCompositeOnGpu:BnGeluKernel.MatchesTheReferenceOnGpu:DwConvKernel.MatchesTheReferenceOnGpu'
export PYTORCH_NO_CUDA_MEMORY_CACHING=1

# run TOOL [KERNEL_FILTER_ARGS...]: the tests under TOOL; its log in $logs/sanitize-TOOL.log.
run() {
  local tool=$1; shift
  "$sanitizer" --tool "$tool" --error-exitcode 3 --print-limit 20 "$@" \
    "$tests" --gtest_filter="$filter" >"$logs/sanitize-$tool.log" 2>&1
}
# ran LOG: whether the tool got as far as running the tests (a summary or gtest's verdict).
ran() { grep -q -E 'SUMMARY|^\[  (PASSED|FAILED) ' "$1"; }
# why LOG: the line that says what went wrong (the first error, else the last line).
why() { { grep -m1 -i -E 'error|unrecognized|unknown|not supported' "$1" || grep -v '^\s*$' "$1" | tail -1; } | cut -c1-120; }
failed=0 checked=0
for tool in ${tools//,/ }; do
  log="$logs/sanitize-$tool.log"
  run "$tool" --kernel-name kns=coatnet
  rc=$?
  # A compute-sanitizer that does not take the kernel filter runs nothing: check every kernel.
  if ((rc != 0)) && ! ran "$log"; then
    echo "$tool: the kernel filter was not taken ($(why "$log")); instrumenting every kernel"
    run "$tool"
    rc=$?
  fi
  # Some machines' runtimes refuse the tool (gVisor: "Device not supported"): that is not a
  # fault of the kernels.
  if ((rc != 0)) && ! ran "$log"; then
    echo "$tool: compute-sanitizer does not run here: $(why "$log")"
    continue
  fi
  checked=$((checked + 1))
  summary=$(grep -m1 -o '[A-Z]* *SUMMARY: .*' "$log")
  tests_line=$(grep -m1 -E '^\[  (PASSED|FAILED) ' "$log")
  echo "$tool: ${summary:-no summary} (tests: ${tests_line:-none ran}; exit $rc)"
  if ((rc != 0)); then
    failed=1
    grep -m 40 '^=========' "$log"
  fi
done
((failed)) && exit 1
((checked)) || { echo "sanitize_kernels: skipped: compute-sanitizer ran no tool on this machine"; exit 77; }
exit 0
