#!/usr/bin/env bash
# `coatnet data bench` vs its ceiling (full-size TurboJPEG decode, one core) and vs torchvision
# ImageFolder + DataLoader + PIL, on the same real-photo JPEGs, same cores, one run; and both
# with RandAugment (2, 15) on one thread/worker.
# The photos come from scikit-image's sample images: installed into .venv on first use
# (tests/bench/requirements.txt), so this runs after launch/setup.sh alone.
# usage: data_throughput.sh [WORKDIR] [COUNT]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/coatnet_data_bench}
count=${2:-1000}
py="$root/.venv/bin/python"
coatnet="$root/build/bin/coatnet"
if [[ ! -d $work/photos ]]; then
  if ! "$py" -c "import skimage" 2>/dev/null; then
    echo "[bench] installing scikit-image into .venv (tests/bench/requirements.txt)" >&2
    "$py" -m pip install -q -r "$root/tests/bench/requirements.txt" >&2
  fi
  "$py" "$root/tests/bench/make_photo_set.py" "$work/photos" "$count"
fi
if [[ ! -f $work/shards/train-report.txt ]]; then
  "$coatnet" pack imagefolder "$work/photos" "$work/shards/train" >/dev/null 2>&1
fi
o1=$("$coatnet" data bench "$work/shards/train-*.h5" --threads 1 --batches 30 --json)
o2=$("$coatnet" data bench "$work/shards/train-*.h5" --threads 2 --batches 30 --json)
t1=$("$py" "$root/tests/bench/torchvision_bench.py" "$work/photos" --workers 1 --batches 15)
t2=$("$py" "$root/tests/bench/torchvision_bench.py" "$work/photos" --workers 2 --batches 15)
# The same with RandAugment (2, 15), the CoAtNet ImageNet recipe's, on one thread/worker.
r1=$("$coatnet" data bench "$work/shards/train-*.h5" --threads 1 --batches 20 --randaugment 2,15 --json)
rt=$("$py" "$root/tests/bench/torchvision_bench.py" "$work/photos" --workers 1 --batches 8 \
  --randaugment 2,15)
"$py" - "$o1" "$o2" "$t1" "$t2" "$r1" "$rt" <<'PY'
import json, sys
o1, o2, t1, t2, r1, rt = (json.loads(a) for a in sys.argv[1:])
print(json.dumps({
    "coatnet_1_thread": o1["images_per_s"], "coatnet_2_threads": o2["images_per_s"],
    "ceiling_full_decode_one_core": o1["ceiling_full_decode_images_per_s_one_core"],
    "per_core_vs_ceiling": o1["per_core_vs_ceiling"],
    "scaling_1_to_2_threads": o2["images_per_s"] / o1["images_per_s"],
    "torchvision_1_worker": t1["images_per_s"], "torchvision_2_workers": t2["images_per_s"],
    "vs_torchvision_1": o1["images_per_s"] / t1["images_per_s"],
    "vs_torchvision_2": o2["images_per_s"] / t2["images_per_s"],
    "coatnet_randaugment_1_thread": r1["images_per_s"],
    "torchvision_randaugment_1_worker": rt["images_per_s"],
    "vs_torchvision_randaugment_1": r1["images_per_s"] / rt["images_per_s"]}))
PY
