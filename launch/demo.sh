#!/usr/bin/env bash
# The main job, on a fresh machine: set-up, pack Debian's Fashion-MNIST into HDF5 shards with
# 2 MPI ranks, train a small C-C-T-T CoAtNet on it with `mpirun -np 2`, evaluate the final
# weights, draw the curves, and say where everything is.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/launch/setup.sh"
cd "$root"
coatnet=build/bin/coatnet
run=runs/demo

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

echo "== the model: a custom C-C-T-T CoAtNet for 32x32 single-channel images =="
"$coatnet" info --config configs/demo_fashion_mnist.yaml

echo "== train with mpirun -np 2 (configs/demo_fashion_mnist.yaml) =="
mpirun --oversubscribe -np 2 "$coatnet" train --config configs/demo_fashion_mnist.yaml \
  --set train.run_dir=runs --set train.name=demo

echo "== evaluate the final weights again, as a user would (coatnet eval, 2 ranks) =="
mpirun --oversubscribe -np 2 "$coatnet" eval --config configs/demo_fashion_mnist.yaml \
  --weights "$run/final.safetensors" --json | tee "$run/eval.json"

echo "== curves (coatnet plot) =="
"$coatnet" plot "$run"

echo "== parity of the model code with timm (random weights, eval mode) =="
.venv/bin/python tests/parity/timm_parity.py --coatnet "$coatnet" --model coatnet_0_224 | tee "$run/parity.json"

cat <<MSG

Done. Everything is in $run/:
  metrics.jsonl      one JSON record per log step and per evaluation (val_top1, val_top5)
  summary.json       best and final top-1, wall time, images/s, data and communication shares
  config.yaml        the resolved config of the run
  final.safetensors  the trained weights (timm names; coatnet eval/forward --weights take them)
  *.png              loss, learning rate, accuracy and throughput curves
  eval.json          coatnet eval of the final weights
MSG
