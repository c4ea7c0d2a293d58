#!/usr/bin/env bash
# The paper's layout study as one command (Dai et al. 2021, section 3.2: "C-C-C-C, C-C-C-T,
# C-C-T-T, C-T-T-T" compared for generalization and model capacity): each layout trained with
# the same recipe and budget on the same data, then its final training loss (capacity: lower is
# more) against its validation accuracy (generalization), as a table, a JSON and a plot.
#
#   launch/layout-study.sh [--config FILE] [--train GLOB --val GLOB] [--epochs N] [--ranks N]
#                          [--layouts LIST] [--out DIR]
#
#   --config FILE    the recipe and model (default configs/demo_fashion_mnist.yaml: a small
#                    CoAtNet for 32x32 grey images); every layout keeps its depths and widths
#   --train, --val   packed shards (coatnet pack); default: Debian's Fashion-MNIST, packed into
#                    data/fashion-mnist/ on first use
#   --epochs N       the budget of every run (default 3)
#   --ranks N        mpirun -np N per run (default 2)
#   --layouts LIST   comma-separated (default CCCC,CCCT,CCTT,CTTT)
#   --out DIR        where the runs, layout-study.{md,json,png} go (default runs/layout-study)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "layout-study: error: $*" >&2; exit 1; }
config=configs/demo_fashion_mnist.yaml train="" val="" epochs=3 ranks=2 out=runs/layout-study
layouts=CCCC,CCCT,CCTT,CTTT
while (($#)); do
  case $1 in
    --config) config=${2:?--config needs a file}; shift 2 ;;
    --train) train=${2:?--train needs a glob}; shift 2 ;;
    --val) val=${2:?--val needs a glob}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a number}; shift 2 ;;
    --ranks) ranks=${2:?--ranks needs a number}; shift 2 ;;
    --layouts) layouts=${2:?--layouts needs a list}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[[ $epochs =~ ^[1-9][0-9]*$ ]] || die "--epochs must be a positive integer, got '$epochs'"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "--ranks must be a positive integer, got '$ranks'"
for l in ${layouts//,/ }; do
  [[ $l =~ ^[CT]{4}$ ]] || die "layout '$l': four letters of C (MBConv) and T (transformer), e.g. CCTT"
done
[[ -n $train && -z $val || -z $train && -n $val ]] && die "--train and --val go together"
cd "$root"
# $COATNET: a built coatnet to use as it is (the test does); else set-up builds build/.
[[ -n ${COATNET:-} ]] || "$root/launch/setup.sh" >/dev/null
coatnet=${COATNET:-build/bin/coatnet} py=.venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [[ -z $train ]]; then
  train="data/fashion-mnist/train-*.h5" val="data/fashion-mnist/test-*.h5"
  if ! compgen -G "$train" >/dev/null; then
    fm=/usr/share/datasets/fashion-mnist
    [[ -d $fm ]] || die "$fm not found: install Debian's fashion-mnist package, or give --train/--val"
    for split in train:train t10k:test; do
      "$coatnet" pack idx "$fm/${split%%:*}-images-idx3-ubyte.gz" "$fm/${split%%:*}-labels-idx1-ubyte.gz" \
        "data/fashion-mnist/${split##*:}" >/dev/null
    done
  fi
fi
"$py" -c 'import matplotlib' 2>/dev/null || "$py" -m pip install -q -r launch/layout-study-requirements.txt
mkdir -p "$out"
t_all=$(date +%s)
for l in ${layouts//,/ }; do
  echo "[layout-study] $l: training $epochs epoch(s) on $ranks rank(s) -> $out/$l"
  t0=$(date +%s)
  rm -rf "${out:?}/$l"
  mpirun --oversubscribe -np "$ranks" "$coatnet" train --config "$config" \
    --set "data.train=[$train]" --set "data.val=[$val]" --set "model.layout=$l" \
    --set "schedule.epochs=$epochs" --set "train.run_dir=$out" --set "train.name=$l" \
    --set checkpoint.enabled=false --set train.progress=lines >"$out/$l.log" 2>&1 ||
    { tail -20 "$out/$l.log"; die "training $l failed ($out/$l.log)"; }
  echo "$(($(date +%s) - t0))" >"$out/$l/wall_s"
  grep '^\[summary\]' "$out/$l.log" | head -1
done
"$py" - "$out" "$layouts" "$epochs" "$config" "$(($(date +%s) - t_all))" <<'PY'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out, layouts, epochs, config, total_s = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rows = []
for l in layouts:
    recs = [json.loads(x) for x in open(f"{out}/{l}/metrics.jsonl")]
    env = next(r for r in recs if r["type"] == "env")
    train = [r for r in recs if r["type"] == "train"]
    last_epoch = [r for r in train if r["epoch"] == train[-1]["epoch"]]
    evals = [r for r in recs if r["type"] == "eval" and not r.get("ema")]
    rows.append({"layout": "-".join(l), "parameters": env["parameters"],
                 "final_train_loss": sum(r["loss"] for r in last_epoch) / len(last_epoch),
                 "val_top1": evals[-1]["val_top1"], "val_loss": evals[-1]["val_loss"],
                 "images_per_s": sum(r["images_per_s"] for r in train[1:]) / max(len(train) - 1, 1),
                 "wall_s": int(open(f"{out}/{l}/wall_s").read())})
json.dump({"config": config, "epochs": epochs, "total_s": total_s, "runs": rows},
          open(f"{out}/layout-study.json", "w"), indent=1)
lines = [f"Layout study: {config}, {epochs} epoch(s) each, {total_s} s in all", "",
         "| layout | parameters | final training loss (last epoch) | validation top-1 | validation loss | images/s | wall s |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in rows:
    lines.append(f"| {r['layout']} | {r['parameters']:,} | {r['final_train_loss']:.4f} | {100 * r['val_top1']:.2f}% "
                 f"| {r['val_loss']:.4f} | {r['images_per_s']:.0f} | {r['wall_s']} |")
open(f"{out}/layout-study.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
names = [r["layout"] for r in rows]
a.bar(names, [r["final_train_loss"] for r in rows], color="tab:blue")
a.set_title("capacity: final training loss (lower = more)")
b.bar(names, [100 * r["val_top1"] for r in rows], color="tab:green")
lo = min(100 * r["val_top1"] for r in rows)
b.set_ylim(max(0, lo - 3), min(100, max(100 * r["val_top1"] for r in rows) + 1))
b.set_title("generalization: validation top-1 (%)")
for ax in (a, b):
    ax.grid(axis="y", alpha=0.3)
fig.suptitle(f"CoAtNet layouts, same recipe and budget ({epochs} epochs)")
fig.tight_layout()
fig.savefig(f"{out}/layout-study.png", dpi=110)
print(f"[layout-study] {out}/layout-study.md, layout-study.json, layout-study.png")
PY
