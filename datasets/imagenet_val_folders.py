#!/usr/bin/env python3
"""ImageNet-1K validation images, as distributed (one flat folder), into class folders of
symbolic links: nothing is moved or copied. `coatnet pack imagefolder` then packs them with the
training set's class order (class = folder name, sorted: the 1,000 WordNet ids).

usage:
  imagenet_val_folders.py VAL_DIR OUT_DIR --solution LOC_val_solution.csv
  imagenet_val_folders.py VAL_DIR OUT_DIR --devkit ILSVRC2012_devkit_t12   (needs scipy)
  imagenet_val_folders.py VAL_DIR OUT_DIR --labels FILE   (lines: IMAGE_FILE WNID)

then:
  coatnet pack imagefolder OUT_DIR data/imagenet/val --records-per-shard 1024

Every image of VAL_DIR must have a label and every label an image; the script stops naming the
first of each kind otherwise, and writes nothing.
"""
import argparse
import csv
import os
import sys


def labels_from_solution(path):
    """Kaggle's LOC_val_solution.csv: ImageId,PredictionString ("n01751748 x y x y ...")."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if "ImageId" not in row or "PredictionString" not in row:
                sys.exit(f"{path}: expected the columns ImageId,PredictionString")
            wnid = row["PredictionString"].split()[0]
            out[row["ImageId"]] = wnid
    return out


def labels_from_devkit(devkit):
    """The ILSVRC2012 devkit: data/ILSVRC2012_validation_ground_truth.txt holds ILSVRC2012_IDs
    for ILSVRC2012_val_00000001.JPEG on; data/meta.mat maps them to WordNet ids."""
    try:
        from scipy.io import loadmat
    except ImportError:
        sys.exit("--devkit reads data/meta.mat with scipy: pip install scipy (or use --solution)")
    meta = loadmat(os.path.join(devkit, "data", "meta.mat"), squeeze_me=True)["synsets"]
    wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in meta if int(s["num_children"]) == 0}
    out = {}
    with open(os.path.join(devkit, "data", "ILSVRC2012_validation_ground_truth.txt")) as f:
        for i, line in enumerate(f, start=1):
            out[f"ILSVRC2012_val_{i:08d}"] = wnid_of[int(line)]
    return out


def labels_from_list(path):
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                sys.exit(f"{path}:{n}: expected IMAGE_FILE WNID, got {line.strip()!r}")
            out[os.path.splitext(parts[0])[0]] = parts[1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("val_dir", help="the flat folder of ILSVRC2012_val_*.JPEG")
    ap.add_argument("out_dir", help="where the class folders of links go (must not exist)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--solution", help="LOC_val_solution.csv (Kaggle)")
    src.add_argument("--devkit", help="ILSVRC2012_devkit_t12 folder")
    src.add_argument("--labels", help="a list: IMAGE_FILE WNID per line")
    a = ap.parse_args()
    if a.solution:
        labels = labels_from_solution(a.solution)
    elif a.devkit:
        labels = labels_from_devkit(a.devkit)
    else:
        labels = labels_from_list(a.labels)
    if os.path.exists(a.out_dir) and os.listdir(a.out_dir):
        sys.exit(f"{a.out_dir}: exists and is not empty; give a new folder")
    images = sorted(f for f in os.listdir(a.val_dir)
                    if os.path.isfile(os.path.join(a.val_dir, f)))
    by_stem = {os.path.splitext(f)[0]: f for f in images}
    unlabelled = [f for s, f in by_stem.items() if s not in labels]
    if unlabelled:
        sys.exit(f"{len(unlabelled)} image(s) of {a.val_dir} have no label, e.g. {unlabelled[0]}")
    missing = [s for s in labels if s not in by_stem]
    if missing:
        sys.exit(f"{len(missing)} labelled image(s) are not in {a.val_dir}, e.g. {missing[0]}")
    val_dir = os.path.abspath(a.val_dir)
    for stem, f in by_stem.items():
        cls_dir = os.path.join(a.out_dir, labels[stem])
        os.makedirs(cls_dir, exist_ok=True)
        os.symlink(os.path.join(val_dir, f), os.path.join(cls_dir, f))
    classes = len(set(labels.values()))
    print(f"{len(by_stem)} images in {classes} class folders under {a.out_dir} (symbolic links)")


if __name__ == "__main__":
    main()
