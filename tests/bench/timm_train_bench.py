#!/usr/bin/env python3
"""The Python peer of `coatnet train`: timm's same model in a plain PyTorch training loop with
the same optimizer and step (AdamW, label-smoothed cross-entropy, clip by global norm), on
in-memory random batches (it does no data loading at all). Prints one JSON object."""
import argparse
import json
import sys
import time

try:
    import torch
    import timm
    from timm.models.maxxvit import MaxxVit, MaxxVitCfg
except ImportError as e:
    print(f"SKIP: needs torch and timm in .venv ({e})", file=sys.stderr)
    sys.exit(77)

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--model", default="demo", help="a timm model name, or 'demo' (the demo's CCTT)")
ap.add_argument("--image-size", type=int, default=32)
ap.add_argument("--in-chans", type=int, default=1)
ap.add_argument("--num-classes", type=int, default=10)
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)

if args.model == "demo":  # configs/demo_fashion_mnist.yaml
    cfg = MaxxVitCfg(embed_dim=(32, 64, 128, 128), depths=(1, 2, 2, 1),
                     block_type=("C", "C", "T", "T"), stem_width=32, head_hidden_size=None)
    model = MaxxVit(cfg, img_size=args.image_size, in_chans=args.in_chans,
                    num_classes=args.num_classes)
else:
    model = timm.create_model(args.model, img_size=args.image_size, in_chans=args.in_chans,
                              num_classes=args.num_classes)
model.train()
decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "relative_position" not in n]
no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "relative_position" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
x = torch.randn(args.batch, args.in_chans, args.image_size, args.image_size)
y = torch.randint(args.num_classes, (args.batch,))


def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for _ in range(args.warmup):
    step()
t0 = time.perf_counter()
for _ in range(args.steps):
    step()
seconds = time.perf_counter() - t0
print(json.dumps({"impl": "timm+pytorch", "model": args.model, "batch": args.batch,
                  "image_size": args.image_size, "threads": torch.get_num_threads(),
                  "steps": args.steps, "images_per_s": args.batch * args.steps / seconds}))
