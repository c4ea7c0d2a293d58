#!/usr/bin/env python3
"""`coatnet forward` with timm weights that do not fit: a missing, an extra, a mis-shaped
tensor and a truncated file each give exit 1 and a message naming the tensor or the file.
Exit 77 (skip) when timm is not installed."""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import timm
    from safetensors.torch import save_file
except ImportError as e:
    print(f"SKIP: needs torch, timm and safetensors in .venv ({e}); launch/setup.sh installs them")
    sys.exit(77)


def main() -> int:
    coatnet = sys.argv[1]
    model = "coatnet_nano_rw_224"
    sd = {k: v.contiguous() for k, v in timm.create_model(model, img_size=64, num_classes=10).state_dict().items()}
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        x = os.path.join(d, "x.safetensors")
        save_file({"images": torch.randn(1, 3, 64, 64)}, x)

        def run(name, weights, expect, code=1):
            nonlocal failures
            path = os.path.join(d, name + ".safetensors")
            if isinstance(weights, bytes):
                open(path, "wb").write(weights)
            else:
                save_file(weights, path)
            r = subprocess.run([coatnet, "forward", "--model", model, "--image-size", "64", "--num-classes", "10",
                                "--weights", path, "--input", x, "--output", os.path.join(d, "y.safetensors")],
                               capture_output=True, text=True)
            ok = r.returncode == code and expect in r.stderr
            print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {r.returncode}: {r.stderr.strip().splitlines()[0] if r.stderr else ''}")
            failures += not ok
            return path

        good = run("good", sd, "logits 1 x 10", code=0)  # the unmodified weights load
        missing = dict(sd)
        del missing["stages.2.blocks.1.attn.qkv.weight"]
        run("missing", missing, "missing tensor 'stages.2.blocks.1.attn.qkv.weight'")
        extra = dict(sd, **{"stages.2.blocks.1.attn.qkv.scale": torch.ones(1)})
        run("extra", extra, "unexpected tensor 'stages.2.blocks.1.attn.qkv.scale'")
        shaped = dict(sd, **{"stem.conv1.weight": torch.zeros(32, 3, 5, 5)})
        run("misshaped", shaped, "'stem.conv1.weight' has shape [32, 3, 5, 5], the model expects [32, 3, 3, 3]")
        data = open(good, "rb").read()
        run("truncated", data[: len(data) - 100], "truncated")
    print(f"bad_weights: {5 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
