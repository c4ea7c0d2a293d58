#!/usr/bin/env python3
"""timm's CoAtNet forward+backward throughput under the same torch, the peer of bench_model:
train mode, cross-entropy on random labels, no optimizer step. Prints one JSON object."""
import argparse
import json
import sys
import time

try:
    import torch
    import timm
except ImportError as e:
    print(f"SKIP: needs torch and timm in .venv ({e})", file=sys.stderr)
    sys.exit(77)

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--model", default="coatnet_0_224")
ap.add_argument("--image-size", type=int, default=224)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--threads", type=int, default=0)
args = ap.parse_args()
if args.threads > 0:
    torch.set_num_threads(args.threads)

model = timm.create_model(args.model, img_size=args.image_size).train()
x = torch.randn(args.batch, 3, args.image_size, args.image_size)
y = torch.randint(model.num_classes, (args.batch,))


def step():
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()


for _ in range(args.warmup):
    step()
t0 = time.perf_counter()
for _ in range(args.steps):
    step()
seconds = time.perf_counter() - t0
print(json.dumps({"impl": "timm", "timm": timm.__version__, "torch": torch.__version__,
                  "model": args.model, "batch": args.batch, "image_size": args.image_size,
                  "threads": torch.get_num_threads(), "steps": args.steps, "seconds": seconds,
                  "images_per_s": args.batch * args.steps / seconds}))
