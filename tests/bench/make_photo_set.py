#!/usr/bin/env python3
"""An ImageNet-like folder of real-photo JPEGs for the data benchmark: random crops of the
colour photographs shipped inside scikit-image (astronaut, coffee, chelsea, rocket, motorcycle,
hubble, retina), resized to about 500x375 and saved at quality 90, in 10 class folders.
Needs scikit-image and Pillow (tests/bench/requirements.txt; data_throughput.sh installs it).
usage: make_photo_set.py OUT_DIR [COUNT]"""
import os
import random
import sys

import numpy as np
from PIL import Image
import skimage

PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg"]


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos = [Image.open(os.path.join(data, p)).convert("RGB") for p in PHOTOS]
    rng = random.Random(0)
    for i in range(count):
        src = photos[i % len(photos)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        img = src.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
        cls = os.path.join(out, f"n{i % 10:08d}")
        os.makedirs(cls, exist_ok=True)
        img.save(os.path.join(cls, f"{i:06d}.JPEG"), quality=90)


if __name__ == "__main__":
    main()
