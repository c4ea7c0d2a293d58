#!/usr/bin/env bash
# launch/layout-study.sh end to end on a tiny synthetic dataset (1 epoch, two layouts, one
# rank): a table row, a JSON record and a plot per layout, the layouts really different models
# (their parameter counts differ), and bad arguments refused with the value named.
set -euo pipefail
src=${1:?usage: layout_study_test.sh SOURCE_DIR COATNET} coatnet=${2:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py="$src/.venv/bin/python"
"$py" "$src/tests/train/make_tiny_idx.py" "$work" 256 101 >/dev/null
for s in train val; do
  "$coatnet" pack idx "$work/$s-images-idx3-ubyte" "$work/$s-labels-idx1-ubyte" "$work/$s" \
    --records-per-shard 100 >/dev/null 2>&1
done
export COATNET=$coatnet
study=("$src/launch/layout-study.sh" --config "$src/tests/train/tiny.yaml" --train "$work/train-*.h5"
       --val "$work/val-*.h5" --epochs 1 --ranks 1 --out "$work/study")
"${study[@]}" --layouts CCTT,CTTT >"$work/log" 2>&1 || { tail -20 "$work/log"; fail "the study failed"; }
grep -q "^| C-C-T-T | " "$work/study/layout-study.md" && grep -q "^| C-T-T-T | " "$work/study/layout-study.md" ||
  fail "no table rows: $(cat "$work/study/layout-study.md")"
[[ -s $work/study/layout-study.png ]] || fail "no plot"
"$py" - "$work/study/layout-study.json" <<'PY' || fail "bad JSON"
import json, sys
r = json.load(open(sys.argv[1]))["runs"]
assert [x["layout"] for x in r] == ["C-C-T-T", "C-T-T-T"], r
assert r[0]["parameters"] != r[1]["parameters"], "the layouts built the same model"
assert all(0 <= x["val_top1"] <= 1 and x["final_train_loss"] > 0 for x in r), r
PY
msg=$("${study[@]}" --layouts CCXT 2>&1) && fail "a bad layout was accepted"
[[ $msg == *"layout 'CCXT'"* ]] || fail "the message does not name the layout: $msg"
msg=$("${study[@]}" --epochs 0 2>&1) && fail "--epochs 0 was accepted"
[[ $msg == *"--epochs must be a positive integer, got '0'"* ]] || fail "the message does not name the value: $msg"
msg=$("$src/launch/layout-study.sh" --train "x-*.h5" 2>&1) && fail "--train without --val was accepted"
[[ $msg == *"--train and --val go together"* ]] || fail "no message for --train without --val: $msg"
echo "PASS: layout_study"
