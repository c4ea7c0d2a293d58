#!/usr/bin/env python3
"""What the relative-position attention of CoAtNet's T stages costs on a GPU, forward and
backward, in the ways ATen can compute it: the composite our model runs (the bias gathered from
the per-head table into a dense, contiguous (heads, N, N) tensor, then
scaled_dot_product_attention with it as a mask, whose backward also returns the table's
gradient), the same with the bias a strided (permuted) view, as the model had it before (SDPA
then falls back to float32 math), explicit matmul + softmax, and flash attention without any
bias (a lower bound no biased kernel can beat). The composite is timed with SDPA's own choice
of backend and also on its memory-efficient and its cuDNN backend alone (cuDNN's, if it takes
a bias with a gradient, would be a one-line change of the model's). It sets
the bar a fused kernel (issue 12) must clear. Prints one JSON object."""
import argparse
import json
import sys

try:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError as e:
    print(f"SKIP: needs torch ({e})", file=sys.stderr)
    sys.exit(77)

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
ap.add_argument("--shapes", default="12x14x32,24x7x32",
                help="comma-separated HEADSxGRIDxDIM (coatnet_0_224's S3 and S4 by default)")
args = ap.parse_args()
if not torch.cuda.is_available():
    print("SKIP: no CUDA device", file=sys.stderr)
    sys.exit(77)
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]


def rel_index(g):
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return ((ys[:, None] - ys[None] + g - 1) * (2 * g - 1) + xs[:, None] - xs[None] + g - 1).flatten()


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


results = []
for shape in args.shapes.split(","):
    heads, g, d = (int(v) for v in shape.split("x"))
    n, b = g * g, args.batch
    q, k, v = (torch.randn(b, heads, n, d, device="cuda", dtype=dtype, requires_grad=True)
               for _ in range(3))
    table = torch.randn((2 * g - 1) ** 2, heads, device="cuda", requires_grad=True)
    idx = rel_index(g).cuda()
    grad_out = torch.randn(b, heads, n, d, device="cuda", dtype=dtype)

    def strided_bias():  # a permuted view: SDPA cannot use its memory-efficient kernel
        return table.index_select(0, idx).view(n, n, heads).permute(2, 0, 1).to(dtype)

    def bias():  # contiguous, as model::RelPosBias::bias() and timm's get_bias()
        return strided_bias().contiguous()

    def composite():
        F.scaled_dot_product_attention(q, k, v, bias()).backward(grad_out)

    def backend(b):  # the composite on one of SDPA's backends, where it takes this input
        def run():
            with sdpa_kernel(b):
                composite()
        return run

    def composite_strided():
        F.scaled_dot_product_attention(q, k, v, strided_bias()).backward(grad_out)

    def explicit():
        a = (q @ k.transpose(-1, -2)) * d ** -0.5 + bias()
        (a.softmax(-1) @ v).backward(grad_out)

    def flash_no_bias():
        F.scaled_dot_product_attention(q, k, v).backward(grad_out)

    row = {"heads": heads, "n": n, "dim_head": d, "batch": b}
    for name, fn in (("composite_ms", composite), ("composite_strided_bias_ms", composite_strided),
                     ("composite_efficient_ms", backend(SDPBackend.EFFICIENT_ATTENTION)),
                     ("composite_cudnn_ms", backend(SDPBackend.CUDNN_ATTENTION)),
                     ("explicit_ms", explicit),
                     ("no_bias_flash_ms", flash_no_bias)):
        try:
            row[name] = timed(fn)
        except RuntimeError as e:  # a backend that refuses this shape or dtype
            row[name] = None
            row[name.replace("_ms", "_error")] = str(e).splitlines()[0][:120]
    # Bytes a fused kernel must move at least: q, k, v, out read/written forward; q, k, v, out,
    # grad_out read and dq, dk, dv written backward.
    row["min_bytes"] = 12 * b * heads * n * d * torch.finfo(dtype).bits // 8
    results.append(row)
print(json.dumps({"device": torch.cuda.get_device_name(), "dtype": args.dtype,
                  "shapes": results}))
