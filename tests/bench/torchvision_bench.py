#!/usr/bin/env python3
"""The peer of `coatnet data bench`: torchvision ImageFolder + DataLoader with PIL
(RandomResizedCrop 224, flip, [RandAugment,] ToTensor, Normalize), images/s with N worker
processes. Prints one JSON object.
usage: torchvision_bench.py ROOT [--workers N] [--batches K] [--randaugment N,M]"""
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
ap.add_argument("--randaugment", default="0,0", help="N,M: RandAugment after the flip; 0,0 = off")
args = ap.parse_args()
torch.set_num_threads(1)
ra_n, ra_m = (int(v) for v in args.randaugment.split(","))
steps = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
if ra_n > 0:
    steps.append(transforms.RandAugment(num_ops=ra_n, magnitude=ra_m))
steps += [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
tf = transforms.Compose(steps)
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
                  "randaugment": args.randaugment, "images_per_s": n / s}))
