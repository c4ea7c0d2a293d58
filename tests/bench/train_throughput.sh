#!/usr/bin/env bash
# Training images/s: `coatnet train` (with its data pipeline) vs timm + a plain PyTorch loop
# (random in-memory batches), same model, batch, optimizer, torch and cores, in one run; then
# 2 ranks x 1 thread vs 1 rank x 2 threads with the share of step time spent waiting for
# communication and data. Needs the packed Fashion-MNIST shards (launch/demo.sh makes them).
# usage: train_throughput.sh [demo|coatnet_0]   -> one JSON object per comparison
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
which=${1:-demo}
py="$root/.venv/bin/python"
[[ -x $py ]] || py=python3
coatnet="$root/build/bin/coatnet"
work=$(mktemp -d /tmp/coatnet_train_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ls "$root"/data/fashion-mnist/train-*.h5 >/dev/null 2>&1 ||
  { echo "no data/fashion-mnist shards: run launch/demo.sh first" >&2; exit 1; }

if [[ $which == demo ]]; then
  model_args=(--config "$root/configs/demo_fashion_mnist.yaml")
  peer_args=(--model demo --image-size 32 --in-chans 1 --batch 256)
  steps=40 log=10 batch=256
else
  model_args=(--config "$root/configs/demo_fashion_mnist.yaml" --set model.name=coatnet_0_224
              --set model.layout= --set "model.depths=[]" --set "model.widths=[]"
              --set model.stem_width=0 --set model.head_hidden=-1 --set model.image_size=224
              --set model.in_chans=3 --set "data.mean=[0.286,0.286,0.286]"
              --set "data.std=[0.353,0.353,0.353]" --set model.drop_path=0)
  peer_args=(--model coatnet_0_224 --image-size 224 --in-chans 3 --batch 8)
  steps=12 log=3 batch=8
fi
# images/s of a run, from its metrics.jsonl, leaving out the first (warm-up) log window.
steady() {
  "$py" - "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
tr = [r for r in recs if r["type"] == "train"][1:]
step = sum(r["step_s"] for r in tr) / len(tr)
print(json.dumps({"images_per_s": sum(r["images_per_s"] for r in tr) / len(tr),
                  "comm_share": sum(r["comm_wait_s"] for r in tr) / len(tr) / step,
                  "data_share": sum(r["data_wait_s"] for r in tr) / len(tr) / step}))
PY
}
run() {  # NAME NP THREADS
  local name=$1 np=$2 threads=$3
  mpirun --oversubscribe -np "$np" --bind-to none "$coatnet" train "${model_args[@]}" \
    --set "data.batch_size=$batch" --set "train.max_steps=$steps" --set "train.log_every_steps=$log" \
    --set "train.threads=$threads" --set data.workers=1 --set "data.val=[]" \
    --set "train.run_dir=$work" --set "train.name=$name" --set train.progress=lines >/dev/null
  steady "$work/$name"
}
ours=$(run one 1 2)
peer=$("$py" "$root/tests/bench/timm_train_bench.py" "${peer_args[@]}" --threads 2 --steps "$steps")
two=$(run two 2 1)
"$py" - "$which" "$ours" "$peer" "$two" <<'PY'
import json, sys
which, ours, peer, two = sys.argv[1], *map(json.loads, sys.argv[2:])
print(json.dumps({"model": which, "batch": peer["batch"],
                  "coatnet_1rank_2threads_images_per_s": round(ours["images_per_s"], 1),
                  "timm_pytorch_2threads_images_per_s": round(peer["images_per_s"], 1),
                  "ratio_vs_peer": round(ours["images_per_s"] / peer["images_per_s"], 3),
                  "coatnet_2ranks_1thread_images_per_s": round(two["images_per_s"], 1),
                  "ratio_2ranks_vs_1rank": round(two["images_per_s"] / ours["images_per_s"], 3),
                  "comm_share_2ranks": round(two["comm_share"], 4),
                  "data_share_2ranks": round(two["data_share"], 4)}))
PY
