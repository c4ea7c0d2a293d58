#!/usr/bin/env bash
# The main job, on a fresh machine: set-up, then what this version of coatnet-dist can do —
# pack Debian's Fashion-MNIST with 2 MPI ranks and verify it, describe every CoAtNet variant,
# check one against timm, and time forward+backward of coatnet_0_224 against timm's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/launch/setup.sh"
cd "$root"
coatnet=build/bin/coatnet
out=runs/demo
mkdir -p "$out"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # harmless when not root
fm=/usr/share/datasets/fashion-mnist
classes="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
echo "== pack Fashion-MNIST into HDF5 shards (mpirun -np 2) =="
for split in train:train t10k:test; do
  mpirun --oversubscribe -np 2 "$coatnet" pack idx "$fm/${split%%:*}-images-idx3-ubyte.gz" \
    "$fm/${split%%:*}-labels-idx1-ubyte.gz" "data/fashion-mnist/${split##*:}" --class-names "$classes"
done
"$coatnet" data inspect 'data/fashion-mnist/train-*.h5'
"$coatnet" data verify 'data/fashion-mnist/*.h5'

echo "== every variant (coatnet info) =="
for m in coatnet_0_224 coatnet_1_224 coatnet_2_224 coatnet_3_224 coatnet_4_224 \
         coatnet_0_rw_224 coatnet_nano_rw_224; do
  "$coatnet" info --model "$m"
  "$coatnet" info --model "$m" --json >"$out/info_$m.json"
done
echo "== a custom layout: the Fashion-MNIST demo model =="
"$coatnet" info --config configs/demo_fashion_mnist.yaml

echo "== parity with timm (random weights, eval mode) =="
.venv/bin/python tests/parity/timm_parity.py --coatnet "$coatnet" --model coatnet_0_224 | tee "$out/parity.json"

echo "== forward+backward, coatnet_0_224, batch 8, CPU: coatnet vs timm =="
tests/bench/model_throughput.sh coatnet_0_224 8 4 | tee "$out/throughput.json"
echo "demo outputs are in $out/"
