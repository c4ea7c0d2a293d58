#!/usr/bin/env bash
# kernel_counters.sh's own logic, without a GPU: ncu, nvidia-smi and bench_optins are stand-ins
# on PATH (the real run is gpu-check's kernel_counters row). Checks: ncu profiles only our
# kernels in bench_optins' step with every opt-in and exports its report as CSV, which
# ncu_kernels.py sums into the JSON line; a machine whose ncu cannot read the counters skips
# (77) with the reason; another ncu failure fails (1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${1:-python3}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bin" "$t/build/bin"
printf '#!/bin/sh\necho "GPU 0: Stand-in"\n' >"$t/bin/nvidia-smi"
printf '#!/bin/sh\nexit 0\n' >"$t/build/bin/bench_optins"
cat >"$t/bin/ncu" <<'SH'
#!/bin/bash
echo "$*" >>"$CALLS"
if [[ $1 == --import ]]; then
  echo '"ID","Kernel Name","Grid Size","Block Size","Section Name","Metric Name","Metric Unit","Metric Value"'
  echo '"0","void coatnet::cuda::(anonymous namespace)::bn_gelu_forward_kernel<float, 4>(long)","(2, 8, 1)","(64, 4, 1)","SOL","Duration","usecond","250"'
  echo '"0","void coatnet::cuda::(anonymous namespace)::bn_gelu_forward_kernel<float, 4>(long)","(2, 8, 1)","(64, 4, 1)","SOL","DRAM Throughput","%","81.5"'
  exit 0
fi
case $MODE in
  noperm) echo "==ERROR== Failed to initialize the profiler: LibraryNotLoaded"; exit 1 ;;
  crash) echo "==ERROR== The application returned an error code (134)."; exit 1 ;;
esac
while [[ $1 != --export ]]; do shift; done
touch "$2.ncu-rep"
SH
chmod +x "$t/bin/"* "$t/build/bin/bench_optins"
fail() { echo "FAIL: $*"; exit 1; }
run() {  # MODE -> $t/out, $rc
  rm -f "$t/calls"
  set +e
  PATH="$t/bin:$PATH" MODE=$1 CALLS="$t/calls" bash "$here/kernel_counters.sh" "$t/build" "$t/out-dir" "$py" >"$t/out" 2>&1
  rc=$?
  set -e
}
run ok
((rc == 0)) || { cat "$t/out"; fail "exit $rc"; }
grep -q -- "--kernel-name-base demangled --kernel-name regex:coatnet::cuda " "$t/calls" ||
  { cat "$t/calls"; fail "ncu does not profile only our kernels"; }
grep -q -- "bench_optins --device cuda --model coatnet_0_224 --batch 128 --variants all" "$t/calls" ||
  { cat "$t/calls"; fail "not bench_optins' step with every opt-in"; }
"$py" - "$t/out" <<'PY'
import json, sys
k = json.loads(open(sys.argv[1]).read().splitlines()[-1])["kernels"][0]
assert k["kernel"] == "bn_gelu_forward_kernel<float, 4>" and abs(k["ms_each"] - 0.25) < 1e-12, k
assert k["dram_pct"] == 81.5, k
PY
run noperm
((rc == 77)) && grep -q "skipped: ncu cannot read the counters here: ==ERROR== Failed to initialize the profiler" "$t/out" ||
  { cat "$t/out"; fail "no access to the counters: expected a skip with the reason (exit $rc)"; }
run crash
((rc == 1)) && grep -q "ncu failed" "$t/out" || { cat "$t/out"; fail "a failing run: expected exit 1 (exit $rc)"; }
echo "kernel_counters: ok"
