#!/usr/bin/env python3
"""The Python peer of `coatnet train`: timm's same model in a plain PyTorch training loop with
the same optimizer and step (AdamW, label-smoothed cross-entropy, clip by global norm), on
in-memory random batches (it does no data loading at all). On a GPU it runs as a timm user
would: --amp bf16 (autocast), --channels-last, --compile (torch.compile of the model), fused
AdamW. Prints one JSON object."""
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
ap.add_argument("--device", default="cpu", help="cpu or cuda")
ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                help="autocast dtype (fp16 with a GradScaler)")
ap.add_argument("--channels-last", action="store_true", help="NHWC model and batches")
ap.add_argument("--compile", action="store_true", help="torch.compile the model")
ap.add_argument("--profile", type=int, default=0, metavar="N",
                help="after timing, profile N more steps and add the device kernels that take the "
                     "most time (ms per step and share) as 'top_kernels': where a fused kernel pays")
args = ap.parse_args()
torch.set_num_threads(args.threads)
device = torch.device(args.device)
if device.type == "cuda":
    torch.backends.cudnn.benchmark = True

if args.model == "demo":  # configs/demo_fashion_mnist.yaml
    cfg = MaxxVitCfg(embed_dim=(32, 64, 128, 128), depths=(1, 2, 2, 1),
                     block_type=("C", "C", "T", "T"), stem_width=32, head_hidden_size=None)
    model = MaxxVit(cfg, img_size=args.image_size, in_chans=args.in_chans,
                    num_classes=args.num_classes)
else:
    model = timm.create_model(args.model, img_size=args.image_size, in_chans=args.in_chans,
                              num_classes=args.num_classes)
model.train().to(device)
if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
fwd = torch.compile(model) if args.compile else model
decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "relative_position" not in n]
no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "relative_position" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-3,
                        fused=device.type == "cuda")
x = torch.randn(args.batch, args.in_chans, args.image_size, args.image_size, device=device)
if args.channels_last:
    x = x.contiguous(memory_format=torch.channels_last)
y = torch.randint(args.num_classes, (args.batch,), device=device)
amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        loss = torch.nn.functional.cross_entropy(fwd(x), y, label_smoothing=0.1)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


t_compile = time.perf_counter()
for _ in range(args.warmup):
    step()
sync()
warmup_s = time.perf_counter() - t_compile
t0 = time.perf_counter()
for _ in range(args.steps):
    step()
sync()
seconds = time.perf_counter() - t0


def top_kernels(n_steps, n_top=25):
    """The device kernels of n_steps profiled steps, most time first: name, ms per step, share."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(n_steps):
            step()
        sync()
    # Kernels only: an operator's own device time would count its kernels a second time.
    kernel = torch.autograd.DeviceType.CUDA
    events = [e for e in prof.key_averages()
              if e.self_device_time_total > 0 and (device.type != "cuda" or e.device_type == kernel)]
    total = sum(e.self_device_time_total for e in events) or 1
    events.sort(key=lambda e: -e.self_device_time_total)
    return {"device_ms_per_step": total / 1e3 / n_steps,
            "kernels": [{"name": e.key[:90], "calls_per_step": e.count / n_steps,
                         "ms_per_step": round(e.self_device_time_total / 1e3 / n_steps, 3),
                         "share": round(e.self_device_time_total / total, 4)}
                        for e in events[:n_top]]}


profile = top_kernels(args.profile) if args.profile > 0 else None
print(json.dumps({"impl": "timm+pytorch" + (" compiled" if args.compile else ""),
                  "model": args.model, "batch": args.batch, "image_size": args.image_size,
                  "threads": torch.get_num_threads(), "device": args.device, "amp": args.amp,
                  "channels_last": args.channels_last, "steps": args.steps,
                  "warmup_s": round(warmup_s, 2),
                  "images_per_s": args.batch * args.steps / seconds,
                  **({"top_kernels": profile} if profile else {})}))
