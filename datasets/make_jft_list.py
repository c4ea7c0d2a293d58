#!/usr/bin/env python3
"""A JFT-style multi-label list for `coatnet pack jft`, from a folder tree or a CSV.

usage:
  make_jft_list.py --tree ROOT OUT.tsv
      ROOT/CLASS/.../IMAGE (e.g. ImageNet-21K's fall11 tree): one label per image, its top
      folder; --all-folders gives every folder on the path as a label (hierarchies)
  make_jft_list.py --csv FILE OUT.tsv [--path-column path] [--labels-column labels]
                   [--weights-column W] [--label-sep ' ']
      one row per image: a path (relative to the CSV's folder, or absolute) and its label
      names; optional per-label weights in the same order

Writes OUT.tsv (path<TAB>label indices[<TAB>weights], paths relative to OUT.tsv's folder, as
`coatnet pack jft` reads them) and OUT.tsv.classes (one class name per line; index = line).
Then:
  coatnet pack jft OUT.tsv data/jft/train --num-classes $(wc -l < OUT.tsv.classes)
"""
import argparse
import csv
import os
import sys

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"}


def from_tree(root, all_folders):
    rows = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        if rel == ".":
            continue
        parts = rel.split(os.sep)
        names = parts if all_folders else parts[:1]
        for f in sorted(files):
            if os.path.splitext(f)[1] in IMAGE_EXTENSIONS:
                rows.append((os.path.join(folder, f), list(names), None))
    return rows


def from_csv(path, path_col, labels_col, weights_col, sep):
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for col in [path_col, labels_col] + ([weights_col] if weights_col else []):
            if col not in (reader.fieldnames or []):
                sys.exit(f"{path}: no column {col!r} (columns: {reader.fieldnames})")
        for n, row in enumerate(reader, start=2):
            names = [x for x in row[labels_col].split(sep) if x]
            if not names:
                sys.exit(f"{path}:{n}: no labels")
            weights = None
            if weights_col:
                weights = [x for x in row[weights_col].split(sep) if x]
                if len(weights) != len(names):
                    sys.exit(f"{path}:{n}: {len(names)} labels but {len(weights)} weights")
            rows.append((os.path.join(base, row[path_col]), names, weights))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tree", help="ROOT of CLASS/.../IMAGE folders")
    src.add_argument("--csv", help="a CSV with a path and a labels column")
    ap.add_argument("out", help="the list to write (OUT.tsv)")
    ap.add_argument("--all-folders", action="store_true", help="--tree: every folder is a label")
    ap.add_argument("--path-column", default="path")
    ap.add_argument("--labels-column", default="labels")
    ap.add_argument("--weights-column")
    ap.add_argument("--label-sep", default=" ")
    a = ap.parse_args()
    rows = (from_tree(a.tree, a.all_folders) if a.tree else
            from_csv(a.csv, a.path_column, a.labels_column, a.weights_column, a.label_sep))
    if not rows:
        sys.exit("no images found")
    classes = sorted({n for _, names, _ in rows for n in names})
    index = {c: i for i, c in enumerate(classes)}
    out_dir = os.path.dirname(os.path.abspath(a.out))
    with open(a.out, "w") as f:
        for path, names, weights in rows:
            line = os.path.relpath(os.path.abspath(path), out_dir) + "\t"
            line += ",".join(str(index[n]) for n in names)
            if weights:
                line += "\t" + ",".join(weights)
            f.write(line + "\n")
    with open(a.out + ".classes", "w") as f:
        f.writelines(c + "\n" for c in classes)
    print(f"{len(rows)} images, {len(classes)} classes: {a.out} (+ .classes); pack with\n"
          f"  coatnet pack jft {a.out} PREFIX --num-classes {len(classes)}")


if __name__ == "__main__":
    main()
