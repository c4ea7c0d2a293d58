#!/usr/bin/env bash
# The hardware counters of this project's CUDA kernels in coatnet_0's training step, read by
# Nsight Compute (ncu): for each kernel its time, DRAM and SM throughput against the GPU's peak,
# achieved and theoretical occupancy, registers and shared memory. They say why a kernel that
# measures slower than its ATen composite is slow (memory-bound below the bandwidth, compute-bound,
# or too few warps), which a timing cannot.
#
# The step is bench_optins' with every opt-in (`--variants all`: the shapes and launches of a real
# run), one step each for the default and for all; ncu profiles only the kernels of namespace
# coatnet::cuda (ATen's, cuBLAS's and cuDNN's run unprofiled), leaving the clocks as they are.
#   kernel_counters.sh BUILD_DIR OUT_DIR [PYTHON]
# Writes OUT_DIR/kernels-ncu.ncu-rep (for Nsight Compute) and kernels-ncu.csv, and prints one
# JSON line (tests/bench/ncu_kernels.py); exits 77 without ncu or a GPU, or where ncu cannot read
# the counters.
set -uo pipefail
build=${1:?usage: kernel_counters.sh BUILD_DIR OUT_DIR [PYTHON]}
out=${2:?usage: kernel_counters.sh BUILD_DIR OUT_DIR [PYTHON]}
py=${3:-python3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[[ -n $ncu ]] || { echo "kernel_counters: skipped: ncu (Nsight Compute) not found"; exit 77; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 ||
  { echo "kernel_counters: skipped: no GPU visible"; exit 77; }
mkdir -p "$out"
report="$out/kernels-ncu"
# Sections rather than single metrics: their names hold across ncu versions and GPUs.
"$ncu" --clock-control none --kernel-name-base demangled --kernel-name 'regex:coatnet::cuda' \
  --launch-count 600 --section SpeedOfLight --section Occupancy --section LaunchStats \
  --export "$report" --force-overwrite \
  "$build/bin/bench_optins" --device cuda --model coatnet_0_224 --batch 128 --variants all \
  --warmup 0 --steps 1 --rounds 1 --json >"$out/kernels-ncu.log" 2>&1
rc=$?
# Some machines' runtimes give no access to the counters (gVisor: "Failed to initialize the
# profiler"; a driver without profiling permission: ERR_NVGPUCTRPERM): skipped, not a failure.
if ((rc != 0)) && grep -q -E 'Failed to initialize the profiler|ERR_NVGPUCTRPERM' "$out/kernels-ncu.log"; then
  echo "kernel_counters: skipped: ncu cannot read the counters here: $(grep -m1 -E 'Failed to initialize|ERR_NVGPUCTRPERM' "$out/kernels-ncu.log" | cut -c1-120)"
  exit 77
fi
((rc == 0)) || { echo "kernel_counters: ncu failed (kernels-ncu.log):"; tail -15 "$out/kernels-ncu.log"; exit 1; }
"$ncu" --import "$report.ncu-rep" --csv --page details >"$out/kernels-ncu.csv" 2>>"$out/kernels-ncu.log" ||
  { echo "kernel_counters: ncu could not export $report.ncu-rep"; tail -5 "$out/kernels-ncu.log"; exit 1; }
"$py" "$here/ncu_kernels.py" "$out/kernels-ncu.csv"
