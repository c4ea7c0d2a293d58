#!/usr/bin/env bash
# The main job, on a fresh machine: set-up, pack Debian's Fashion-MNIST into HDF5 shards with
# 2 MPI ranks, train a small C-C-T-T CoAtNet on it with `mpirun -np 2` — stopped part-way by a
# signal as a preemption would, and resumed from its checkpoint — check that the resumed run
# continued exactly, evaluate the final weights, draw the curves, and say where everything is.
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

echo "== train with mpirun -np 2 (configs/demo_fashion_mnist.yaml), preempted part-way =="
# A fresh run each time (--resume auto would otherwise continue the last demo's checkpoints).
rm -rf "$run" runs/demo-reference
mkdir -p runs
train=(mpirun --oversubscribe -np 2 "$coatnet" train --config configs/demo_fashion_mnist.yaml
       --set train.run_dir=runs --set train.name=demo)
t0=$(date +%s)
"${train[@]}" >runs/demo-part1.log 2>&1 &
pid=$!
tail -f --pid=$pid runs/demo-part1.log &
# As a preemption notice would (Slurm: --signal=USR1@120), signal the job at step 200: every
# rank stops at the same step boundary, saves a checkpoint and exits with 75.
until grep -q "step 200/" runs/demo-part1.log; do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -USR1 $pid
rc=0
wait $pid || rc=$?
sleep 0.5
[[ $rc == 75 ]] || { echo "expected exit 75 after the stop signal, got $rc" >&2; exit 1; }
echo "== the job was stopped (exit 75) and saved $(cat "$run/checkpoints/latest"); resume with --resume auto =="
"$coatnet" ckpt list "$run/checkpoints"
spe=$(.venv/bin/python -c "import json,sys; print(next(json.loads(l) for l in open(sys.argv[1]) if '\"env\"' in l)['steps_per_epoch'])" "$run/metrics.jsonl")
# keep_every: keep the first epoch's checkpoint for the exactness check below.
"${train[@]}" --resume auto --set checkpoint.keep_every="$spe"
t1=$(date +%s)

echo "== exactness: an uninterrupted run of the first epoch ($spe steps) must give the same state =="
mpirun --oversubscribe -np 2 "$coatnet" train --config configs/demo_fashion_mnist.yaml \
  --set train.run_dir=runs --set train.name=demo-reference --set train.max_steps="$spe" \
  >runs/demo-reference.log 2>&1
step_dir=$(printf "step-%08d" "$spe")
sums() { grep '^    xxh3:' "$1/$step_dir/manifest.yaml"; }
if [[ $(sums "$run/checkpoints") == $(sums runs/demo-reference/checkpoints) ]]; then
  resume_check="exact: the stopped-and-resumed run's checkpoint at step $spe is byte-identical to an uninterrupted run's (weights, AdamW state, BatchNorm buffers)"
else
  echo "the resumed run differs from the uninterrupted one at step $spe" >&2
  exit 1
fi
echo "resume $resume_check"

echo "== evaluate the final weights again, as a user would (coatnet eval, 2 ranks) =="
mpirun --oversubscribe -np 2 "$coatnet" eval --config configs/demo_fashion_mnist.yaml \
  --weights "$run/final.safetensors" --json | tee "$run/eval.json"

echo "== curves (coatnet plot) =="
"$coatnet" plot "$run"

echo "== parity of the model code with timm (random weights, eval mode) =="
.venv/bin/python tests/parity/timm_parity.py --coatnet "$coatnet" --model coatnet_0_224 | tee "$run/parity.json"

cat <<MSG

Done. Training took $((t1 - t0)) s in all (both parts, with the restart).
Resume check: $resume_check.
Everything is in $run/:
  metrics.jsonl      one JSON record per log step and per evaluation (val_top1, val_top5)
  summary.json       best and final top-1, wall time, images/s, data and communication shares
  config.yaml        the resolved config of the run
  final.safetensors  the trained weights (timm names; coatnet eval/forward --weights take them)
  *.png              loss, learning rate, accuracy and throughput curves
  eval.json          coatnet eval of the final weights
  checkpoints/       sharded checkpoints (coatnet ckpt list|verify|info, coatnet export)
MSG
