#!/usr/bin/env bash
# The preparation scripts of datasets/ on small generated trees, through `coatnet pack`:
# - imagenet_val_folders.py: a flat val folder + LOC_val_solution.csv (and the same labels as
#   a plain list) become class folders of links; packed, they hold the train set's class names
#   in the same order and each class's count (counts differ per class, so a wrong mapping shows);
#   an unlabelled image and a label without an image are refused, writing nothing;
# - make_jft_list.py: from a tree (top folder, and --all-folders) and from a CSV with weights;
#   the list's label indices name the right classes, and `pack jft` packs every image.
# usage: datasets_test.sh COATNET PYTHON SOURCE_DIR
set -euo pipefail
coatnet=$1 py=$2 src=$3
work=$(mktemp -d /tmp/coatnet_datasets.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
inspect() { "$coatnet" data inspect "$@" --json; }

# Train: 3 classes; val: class k has k+1 images (1, 2, 3), flat, with Kaggle's CSV.
"$py" - "$work" <<'PY'
import os, sys
from PIL import Image
w = sys.argv[1]
classes = ["n01440764", "n01443537", "n01484850"]
def jpeg(path, k):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (24 + 4 * k, 20), (40 * k, 90, 200 - 50 * k)).save(path, quality=90)
for k, c in enumerate(classes):
    for i in range(4):
        jpeg(f"{w}/train/{c}/{c}_{i}.JPEG", k)
n = 0
with open(f"{w}/LOC_val_solution.csv", "w") as sol, open(f"{w}/val_labels.txt", "w") as lst:
    sol.write("ImageId,PredictionString\n")
    for k, c in enumerate(classes):
        for _ in range(k + 1):
            n += 1
            stem = f"ILSVRC2012_val_{n:08d}"
            jpeg(f"{w}/val/{stem}.JPEG", k)
            sol.write(f"{stem},{c} 1 2 3 4 {c} 5 6 7 8\n")
            lst.write(f"{stem}.JPEG {c}\n")
PY
"$coatnet" pack imagefolder "$work/train" "$work/packed/train" >/dev/null
for how in solution labels; do
  if [[ $how == solution ]]; then arg=(--solution "$work/LOC_val_solution.csv"); else arg=(--labels "$work/val_labels.txt"); fi
  "$py" "$src/datasets/imagenet_val_folders.py" "$work/val" "$work/val_$how" "${arg[@]}"
  "$coatnet" pack imagefolder "$work/val_$how" "$work/packed/val_$how" >/dev/null
  "$py" - "$(inspect "$work/packed/train-*.h5")" "$(inspect "$work/packed/val_$how-*.h5")" <<'PY'
import json, sys
train, val = (json.loads(a) for a in sys.argv[1:])
assert val["class_names"] == train["class_names"], (val["class_names"], train["class_names"])
assert val["records"] == 6, val
assert val["per_class"] == {"0": 1, "1": 2, "2": 3}, val["per_class"]
PY
done
# Every entry is a link to the image of the same name, in the folder of its labelled class.
"$py" - "$work" <<'PY'
import os, sys
w = sys.argv[1]
label = dict(l.split() for l in open(f"{w}/val_labels.txt"))
for wnid in os.listdir(f"{w}/val_solution"):
    for f in os.listdir(f"{w}/val_solution/{wnid}"):
        p = f"{w}/val_solution/{wnid}/{f}"
        assert os.path.islink(p), f"{p} was copied, not linked"
        assert os.readlink(p) == f"{w}/val/{f}", (p, os.readlink(p))
        assert label[f] == wnid, (f, wnid)
PY
[[ $(ls "$work/val" | wc -l) == 6 ]] || fail "the flat val folder changed"
echo "imagenet_val_folders.py: 6 val images in the train set's 3 classes (1, 2, 3 each), as links"

# Refusals: an image without a label, a label without an image; nothing written.
cp "$work/val/ILSVRC2012_val_00000001.JPEG" "$work/val/ILSVRC2012_val_00000099.JPEG"
if "$py" "$src/datasets/imagenet_val_folders.py" "$work/val" "$work/bad1" --labels "$work/val_labels.txt" 2>"$work/err1"; then
  fail "an unlabelled image was accepted"
fi
grep -q "have no label, e.g. ILSVRC2012_val_00000099.JPEG" "$work/err1" || { cat "$work/err1"; fail "no message naming the unlabelled image"; }
rm "$work/val/ILSVRC2012_val_00000099.JPEG"
echo "ILSVRC2012_val_00000077.JPEG n01440764" >>"$work/val_labels.txt"
if "$py" "$src/datasets/imagenet_val_folders.py" "$work/val" "$work/bad2" --labels "$work/val_labels.txt" 2>"$work/err2"; then
  fail "a label without an image was accepted"
fi
grep -q "not in .*, e.g. ILSVRC2012_val_00000077" "$work/err2" || { cat "$work/err2"; fail "no message naming the missing image"; }
[[ ! -e $work/bad1 && ! -e $work/bad2 ]] || fail "a refused run wrote class folders"
echo "imagenet_val_folders.py: refusals name the image"

# make_jft_list.py from the tree, top folder and --all-folders, and from a CSV with weights.
mkdir -p "$work/tree/animals/cat" "$work/tree/animals/dog" "$work/tree/plants"
cp "$work/train/n01440764/n01440764_0.JPEG" "$work/tree/animals/cat/a.jpg"
cp "$work/train/n01440764/n01440764_1.JPEG" "$work/tree/animals/dog/b.jpg"
cp "$work/train/n01443537/n01443537_0.JPEG" "$work/tree/plants/c.jpg"
printf 'path,labels,w\ntree/animals/cat/a.jpg,cat animal,0.9 1\ntree/plants/c.jpg,plant,1\n' >"$work/labels.csv"
mkdir -p "$work/lists"
"$py" "$src/datasets/make_jft_list.py" --tree "$work/tree" "$work/lists/top.tsv" >/dev/null
"$py" "$src/datasets/make_jft_list.py" --tree "$work/tree" "$work/lists/all.tsv" --all-folders >/dev/null
"$py" "$src/datasets/make_jft_list.py" --csv "$work/labels.csv" "$work/lists/csv.tsv" --weights-column w >/dev/null
"$py" - "$work/lists" <<'PY'
import os, sys
d = sys.argv[1]
def read(name):
    classes = open(f"{d}/{name}.tsv.classes").read().split("\n")[:-1]
    rows = {}
    for line in open(f"{d}/{name}.tsv"):
        cols = line.rstrip("\n").split("\t")
        assert os.path.exists(os.path.join(d, cols[0])), cols[0]  # relative to the list
        rows[os.path.basename(cols[0])] = ([classes[int(i)] for i in cols[1].split(",")], cols[2:])
    return rows
assert read("top") == {"a.jpg": (["animals"], []), "b.jpg": (["animals"], []), "c.jpg": (["plants"], [])}, read("top")
assert read("all") == {"a.jpg": (["animals", "cat"], []), "b.jpg": (["animals", "dog"], []), "c.jpg": (["plants"], [])}, read("all")
assert read("csv") == {"a.jpg": (["cat", "animal"], ["0.9,1"]), "c.jpg": (["plant"], ["1"])}, read("csv")
PY
for name in top all csv; do
  k=$(wc -l <"$work/lists/$name.tsv.classes")
  "$coatnet" pack jft "$work/lists/$name.tsv" "$work/packed/jft_$name" --num-classes "$k" >/dev/null
  "$py" - "$(inspect "$work/packed/jft_$name-*.h5")" "$(wc -l <"$work/lists/$name.tsv")" "$k" <<'PY'
import json, sys
m = json.loads(sys.argv[1])
assert m["multi_label"] and m["records"] == int(sys.argv[2]) and m["num_classes"] == int(sys.argv[3]), m
PY
done
echo "make_jft_list.py: tree (top folder, all folders) and CSV with weights, packed by pack jft"
echo "PASS: datasets/ scripts"
