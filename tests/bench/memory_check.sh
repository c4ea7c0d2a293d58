#!/usr/bin/env bash
# The memory plan (`coatnet info --batch --world-size --zero`) against what `coatnet train`
# really holds: each rank's peak resident memory (/usr/bin/time, the largest rank) over a few
# steps on the CPU, fp32, 224 px, 1 channel, 10 classes, on a small synthetic dataset; with and
# without ZeRO-1. A case whose plan exceeds the machine's memory is skipped, with the figures.
# usage: memory_check.sh [--models "coatnet_3_224 coatnet_4_224"] [--worlds "1 2 4"]
#                        [--zero "0 1"] [--batch-per-rank 2] [--steps 2] [--json]
#   -> a table (and with --json one JSON object per case on stdout)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
models="coatnet_3_224 coatnet_4_224" worlds="1 2 4" zeros="0 1" per_rank=2 steps=2 json=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --models) models=$2; shift 2 ;;
  --worlds) worlds=$2; shift 2 ;;
  --zero) zeros=$2; shift 2 ;;
  --batch-per-rank) per_rank=$2; shift 2 ;;
  --steps) steps=$2; shift 2 ;;
  --json) json=1; shift ;;
  -h | --help) sed -n '2,9p' "$0" | cut -c3-; exit 0 ;;
  *) echo "memory_check.sh: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
done
py="$root/.venv/bin/python"
[[ -x $py ]] || py=python3
coatnet="$root/build/bin/coatnet"
[[ -x $coatnet ]] || { echo "memory_check.sh: build first (launch/test.sh or ninja in build/)" >&2; exit 1; }
work=$(mktemp -d /tmp/coatnet_memory_check.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$py" "$root/tests/train/make_tiny_idx.py" "$work" 64 8 >/dev/null
"$coatnet" pack idx "$work/train-images-idx3-ubyte" "$work/train-labels-idx1-ubyte" "$work/train" \
  >/dev/null 2>&1
mem_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)

printf "%-14s %2s %4s %6s %14s %14s %10s\n" model W zero batch "predicted GiB" "measured GiB" "meas-pred"
for model in $models; do
  for w in $worlds; do
    for zero in $zeros; do
      [[ $zero == 1 && $w == 1 ]] && continue  # one rank: nothing to split
      batch=$((per_rank * w))
      plan=$("$coatnet" info --model "$model" --set model.in_chans=1 --num-classes 10 --batch "$batch" \
        --world-size "$w" --zero "$zero" --precision fp32 --json)
      predicted=$(echo "$plan" | "$py" -c "import json,sys; print(json.load(sys.stdin)['memory']['total_bytes'])")
      # Every rank's plan, plus about 0.5 GiB of libraries each: over the machine, skip.
      if ((predicted / 1024 * w + w * 512 * 1024 > mem_kib * 9 / 10)); then
        printf "%-14s %2d %4d %6d %14.2f %14s %10s\n" "$model" "$w" "$zero" "$batch" \
          "$(echo "$predicted / 2^30" | bc -l)" "skipped" "(> RAM)"
        continue
      fi
      rm -f "$work"/rss.*
      mpirun --oversubscribe -np "$w" bash -c \
        '/usr/bin/time -f %M -o "$0/rss.$OMPI_COMM_WORLD_RANK" "$@"' "$work" \
        "$coatnet" train --config "$root/tests/train/tiny.yaml" --set model.name="$model" \
        --set model.layout= --set "model.depths=[]" --set "model.widths=[]" \
        --set model.stem_width=0 --set model.head_hidden=-1 --set model.image_size=224 \
        --set "data.train=[$work/train-*.h5]" --set "data.val=[]" --set data.batch_size="$batch" \
        --set train.max_steps="$steps" --set checkpoint.enabled=false --set optim.zero="$zero" \
        --set precision.backend=fp32 --set train.run_dir="$work/runs" --set train.progress=lines \
        --set train.threads=$(( $(nproc) / w > 0 ? $(nproc) / w : 1 )) >"$work/train.log" 2>&1 ||
        { tail -5 "$work/train.log" >&2; echo "memory_check.sh: $model W=$w zero=$zero failed" >&2; exit 1; }
      measured=$(cat "$work"/rss.* | sort -n | tail -1)  # KiB, the largest rank
      "$py" - "$model" "$w" "$zero" "$batch" "$predicted" "$measured" "$json" "$plan" <<'PY'
import json, sys
model, w, zero, batch, pred, meas_kib, js, plan = sys.argv[1:]
pred, meas = int(pred), int(meas_kib) * 1024
g = 2 ** 30
print(f"{model:<14} {int(w):2d} {int(zero):4d} {int(batch):6d} {pred / g:14.2f} {meas / g:14.2f} "
      f"{(meas - pred) / g:10.2f}")
if js == "1":
    m = json.loads(plan)["memory"]
    print(json.dumps({"model": model, "world_size": int(w), "zero": int(zero), "batch": int(batch),
                      "predicted_bytes": pred, "measured_peak_rss_bytes": meas,
                      "optimizer_bytes": m["optimizer_bytes"], "ema_bytes": m["ema_bytes"]}))
PY
    done
  done
done
