#!/usr/bin/env python3
"""Writes a small learnable IDX dataset (MNIST format): 28x28 images of class-dependent
stripes plus noise. usage: make_tiny_idx.py OUT_DIR N_TRAIN N_VAL"""
import struct
import sys

import numpy as np


def write(path, magic, array):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.astype(np.uint8).tobytes())


def make(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.empty((n, 28, 28))
    for i, c in enumerate(labels):
        angle = np.pi * c / 10
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * (0.4 + 0.05 * c))
        images[i] = 128 + 90 * wave + rng.normal(0, 25, (28, 28))
    return np.clip(images, 0, 255), labels


out, n_train, n_val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
    images, labels = make(n, seed)
    write(f"{out}/{name}-images-idx3-ubyte", 0x803, images)
    write(f"{out}/{name}-labels-idx1-ubyte", 0x801, labels)
