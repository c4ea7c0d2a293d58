#!/usr/bin/env python3
"""The peer of `coatnet data bench`: torchvision ImageFolder + DataLoader with PIL
(RandomResizedCrop 224, flip, ToTensor, Normalize), images/s with N worker processes.
Prints one JSON object.  usage: torchvision_bench.py ROOT [--workers N] [--batches K]"""
import argparse
import json
import time

import torch
from torchvision import datasets, transforms

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("root")
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--batches", type=int, default=20)
args = ap.parse_args()
torch.set_num_threads(1)
tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                         transforms.ToTensor(),
                         transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = datasets.ImageFolder(args.root, tf)
dl = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                 drop_last=True, persistent_workers=args.workers > 0)
it = iter(dl)
next(it)  # warm-up: worker start, page cache
t0 = time.perf_counter()
n = 0
for _ in range(args.batches):
    try:
        x, _ = next(it)
    except StopIteration:
        it = iter(dl)
        x, _ = next(it)
    n += x.shape[0]
s = time.perf_counter() - t0
print(json.dumps({"impl": "torchvision", "workers": args.workers, "batch": args.batch,
                  "images_per_s": n / s}))
