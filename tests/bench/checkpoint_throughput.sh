#!/usr/bin/env bash
# Checkpoint save/load throughput of the coatnet_0_224 training state (~400 MB: parameters,
# AdamW moments, EMA) at W=1 and W=2, against the sequential write bandwidth of the same disk
# (dd … conv=fsync) measured in the same run; and the step-time cost of an asynchronous save.
# usage: checkpoint_throughput.sh [DIR] [MODEL]   -> one JSON object per world size
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build/ckpt_bench}
model=${2:-coatnet_0_224}
bench="$root/build/bin/bench_checkpoint"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

# The disk's sequential write bandwidth for the same amount of data, fsynced.
mb=400
dd_out=$(dd if=/dev/urandom of="$dir/dd.bin" bs=1M count=$mb conv=fsync 2>&1 | tail -1)
rm -f "$dir/dd.bin"
dd_mbps=$(echo "$dd_out" | awk -F', ' '{print $NF}' | awk '{v=$1; u=$2; if (u ~ /^GB/) v*=1000; if (u ~ /^kB/) v/=1000; print v}')
echo "dd: $dd_out" >&2
# /dev/urandom can be slower than the disk; also time writing a file already in memory.
head -c ${mb}M /dev/urandom >/dev/shm/coatnet_dd_src.bin
dd_out=$(dd if=/dev/shm/coatnet_dd_src.bin of="$dir/dd.bin" bs=1M conv=fsync 2>&1 | tail -1)
rm -f "$dir/dd.bin" /dev/shm/coatnet_dd_src.bin
dd2=$(echo "$dd_out" | awk -F', ' '{print $NF}' | awk '{v=$1; u=$2; if (u ~ /^GB/) v*=1000; if (u ~ /^kB/) v/=1000; print v}')
echo "dd from memory: $dd_out" >&2
dd_mbps=$(python3 -c "print(max($dd_mbps, $dd2))")

for np in 1 2; do
  out=$(mpirun --oversubscribe -np $np "$bench" --model "$model" --dir "$dir/ck" --json)
  python3 - "$out" "$dd_mbps" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
dd = float(sys.argv[2])
r["dd_write_mb_per_s"] = dd
r["save_vs_dd"] = r["save_mb_per_s"] / dd
print(json.dumps(r))
PY
done
