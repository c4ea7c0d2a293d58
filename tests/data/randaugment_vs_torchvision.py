#!/usr/bin/env python3
"""RandAugment op by op against torchvision's (transforms.RandAugment's own _apply_op and
magnitude bins), on real photos, at several magnitudes and both directions.

"Within one level": the mean absolute difference between our op at magnitude m and
torchvision's at m is no larger than the difference between torchvision's at m and at its
nearest other level (m - 1 or m + 1), plus 0.5 grey levels for the rounding convention (ours
rounds like PIL, torchvision's tensor ops truncate). Exit 77 (skipped) without torchvision.

usage: randaugment_vs_torchvision.py AUG_OP_TOOL PHOTO_DIR
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import InterpolationMode, RandAugment
    from torchvision.transforms.autoaugment import _apply_op
except ImportError as e:
    print(f"SKIP: needs torchvision and Pillow ({e})")
    sys.exit(77)

MAGNITUDES = (0, 5, 9, 15, 30)
ROUNDING = 0.5  # mean |difference| that rounding instead of truncating may cause
OURS = {  # torchvision's name -> ours
    "Identity": "identity", "ShearX": "shear_x", "ShearY": "shear_y",
    "TranslateX": "translate_x", "TranslateY": "translate_y", "Rotate": "rotate",
    "Brightness": "brightness", "Color": "color", "Contrast": "contrast",
    "Sharpness": "sharpness", "Posterize": "posterize", "Solarize": "solarize",
    "AutoContrast": "autocontrast", "Equalize": "equalize",
}


def ours_all(tool, img, workdir):
    """Every op at MAGNITUDES, both directions: {(op, m, sign): image}, from one process."""
    h, w, c = img.shape
    raw = os.path.join(workdir, "in.raw")
    img.tofile(raw)
    subprocess.run([tool, str(h), str(w), str(c), raw, workdir,
                    ",".join(map(str, MAGNITUDES))], check=True)
    return {(op, m, sign): np.fromfile(os.path.join(
                workdir, f"{OURS[op]}_{m}_{'p' if sign > 0 else 'm'}.raw"), np.uint8).reshape(h, w, c)
            for op in OURS for m in MAGNITUDES for sign in (1, -1)}


def theirs(op, m, sign, img, space):
    bins, signed = space[op]
    magnitude = float(bins[m]) * sign if bins.ndim > 0 else 0.0
    t = torch.from_numpy(img.copy()).permute(2, 0, 1)
    out = _apply_op(t, op, magnitude, interpolation=InterpolationMode.NEAREST, fill=None)
    return out.permute(1, 2, 0).numpy()


def mad(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def main():
    tool, photo_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    photos = {f: np.asarray(Image.open(os.path.join(photo_dir, f)).convert("RGB"))
              for f in sorted(os.listdir(photo_dir)) if f.endswith(".png")}
    with tempfile.TemporaryDirectory() as tmp:
        mine = {}
        for name, img in photos.items():
            os.makedirs(os.path.join(tmp, name))
            mine[name] = ours_all(tool, img, os.path.join(tmp, name))
    space = {name: RandAugment()._augmentation_space(31, img.shape[:2])
             for name, img in photos.items()}
    failures = []
    print(f"{'op':13} {'m':>3} {'sign':>4}  {'|ours-tv|':>9} {'one level':>9}   (worst photo)")
    for op in OURS:
        for m in MAGNITUDES:
            for sign in (1, -1):
                worst = None
                for name, img in photos.items():
                    bins, signed = space[name][op]
                    if sign < 0 and (bins.ndim == 0 or not signed):
                        continue  # no magnitude or no direction: one case
                    tv = theirs(op, m, sign, img, space[name])
                    level = max(mad(tv, theirs(op, k, sign, img, space[name]))
                                for k in (m - 1, m + 1) if 0 <= k <= 30)
                    d = mad(mine[name][(op, m, sign)], tv)
                    if worst is None or d - level > worst[0] - worst[1]:
                        worst = (d, level, name)
                if worst is None:
                    continue
                d, level, name = worst
                ok = d <= level + ROUNDING
                print(f"{op:13} {m:3d} {sign:+4d}  {d:9.3f} {level:9.3f}   {name}"
                      f"{'' if ok else '   <-- more than one level'}")
                if not ok:
                    failures.append(f"{op} m={m} sign={sign:+d} on {name}: {d:.3f} > {level:.3f}")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)
    print(f"PASS: all {len(OURS)} ops within one level of torchvision's at m in {MAGNITUDES}")


if __name__ == "__main__":
    main()
