#!/usr/bin/env python3
"""Parity with timm, the reference implementation.

Builds a timm CoAtNet with random weights (BatchNorm running statistics and norm affine
parameters randomized too, so every tensor matters), exports its state_dict as safetensors,
runs `coatnet forward` on the same input, and requires max|dlogit| <= tol * max|logit|.

Exit 0 on parity, 1 on a mismatch, 77 (ctest's skip code) when timm is not installed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import timm
    from safetensors.torch import save_file, load_file
except ImportError as e:  # reported as a skip by ctest, with the reason
    print(f"SKIP: timm parity needs torch, timm and safetensors in .venv ({e}); "
          "launch/setup.sh installs them")
    sys.exit(77)


def randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--coatnet", required=True, help="path to build/bin/coatnet")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--train", action="store_true", help="compare in training mode (BN batch stats)")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False, img_size=args.image_size,
                              num_classes=args.num_classes)
    randomize(model, seed=1)
    model.train(args.train)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)

    with tempfile.TemporaryDirectory() as d:
        weights, inp, out = (os.path.join(d, n) for n in ("w.safetensors", "x.safetensors", "y.safetensors"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
        save_file({"images": x}, inp)
        cmd = [args.coatnet, "forward", "--model", args.model, "--image-size", str(args.image_size),
               "--num-classes", str(args.num_classes), "--weights", weights, "--input", inp,
               "--output", out] + (["--train"] if args.train else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: {' '.join(cmd)} exited {r.returncode}\n{r.stderr}")
            return 1
        got = load_file(out)["logits"]

    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    ok = got.shape == want.shape and diff <= args.tol * scale
    print(json.dumps({"model": args.model, "image_size": args.image_size, "train": args.train,
                      "max_abs_diff": diff, "max_abs_logit": scale, "ratio": diff / scale,
                      "tolerance": args.tol, "parity": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
