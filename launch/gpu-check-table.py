#!/usr/bin/env python3
"""gpu-check's table and JSON, from the results.tsv of a run (launch/gpu-check.sh calls it last).

usage: gpu-check-table.py RESULTS_TSV OUT_DIR GPU_NAME TOTAL_SECONDS MODEL_INFO_JSON

RESULTS_TSV has one row per step: name <TAB> status <TAB> seconds <TAB> detail, where the detail
of a benchmark that ran is its JSON. Writes OUT_DIR/gpu-check.txt (the table, also printed) and
OUT_DIR/gpu-check.json; exits 1 when a step failed. Run it again on a results.tsv to redo the
table of an earlier run.
"""
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
out, gpu, total_s, info = sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
def bench(name):
    for r in rows:
        if r[0] == "bench " + name and r[1] == "ok":
            try: return json.loads(r[3])
            except json.JSONDecodeError: return None
ours, eager, comp = bench("ours_coatnet_0_bf16"), bench("timm_eager_bf16"), bench("timm_compile_bf16")
# Our training runs other than the default (the rule: an opt-in that trains faster becomes the
# default), the default's rewrites all off (what they give), and the step launched from the host
# instead of replayed as a CUDA graph.
OPTIN_ROWS = {"ours_coatnet_0_bf16_composites": "ours with ATen's composites only",
              "ours_coatnet_0_bf16_batch_prep": "ours + batch_prep kernel",
              "ours_coatnet_0_bf16_dw_conv": "ours + dw_conv_dgrad kernel",
              "ours_coatnet_0_bf16_eager": "ours eager (train.cuda_graph=false)",
              "ours_coatnet_0_bf16_cudnn_attention": "ours, attention on cuDNN (train.attention=cudnn)"}
mm, loader = bench("matmul_bf16"), bench("loader_cores")
flops_per_image = 3 * 2 * info["gmacs"] * 1e9  # forward + backward (twice the forward)
datasheet = 989.4e12 if "H100" in gpu or "H200" in gpu else None  # dense bf16, SXM
summary = {"gpu": gpu, "total_s": total_s, "tests": {}, "bench": {}}
for r in rows:
    (summary["tests"] if r[0].startswith(("test", "build", "kernels", "photo")) else summary["bench"])[r[0]] = \
        {"status": r[1], "seconds": int(r[2]), "detail": r[3]}
ips = lambda b: b["images_per_s"] if b else None
goals = []
def ratio(name, a, b, goal):
    v = a / b if a and b else None
    summary[name] = v
    goals.append((name, v, goal))
ratio("ours_vs_timm_eager", ips(ours), ips(eager), 1.3)
ratio("ours_vs_timm_compile", ips(ours), ips(comp), 1.0)
ratio("loader_vs_gpu_consumption", ips(loader), ips(ours), 2.0)
for name, b in (("ours", ours), ("timm_eager", eager), ("timm_compile", comp)):
    if b:
        summary[f"mfu_{name}_datasheet"] = b["images_per_s"] * flops_per_image / datasheet if datasheet else None
        summary[f"mfu_{name}_measured_matmul"] = b["images_per_s"] * flops_per_image / (mm["tflops"] * 1e12) if mm else None
summary["optin_vs_ours"] = {row: ips(bench(row)) / ips(ours) for row in OPTIN_ROWS
                            if bench(row) and ours}
json.dump(summary, open(f"{out}/gpu-check.json", "w"), indent=1)
lines = [f"gpu-check on {gpu}: {total_s} s end to end (goal <= 480)", "",
         "| step | status | s | detail |", "| --- | --- | ---: | --- |"]
for r in rows:
    lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3][:160]} |")
lines += ["", "| figure | value | goal |", "| --- | ---: | ---: |"]
fmt = lambda v, f="{:.1f}": "n/a" if v is None else f.format(v)
kern = bench("kernels")
# Our runs: the default, each opt-in alone, all of them, and the baseline commit.
variants = [("ours", ours)] + [(label, bench(row)) for row, label in OPTIN_ROWS.items()] + \
    [("ours at the baseline commit", bench("ours_baseline_coatnet_0_bf16"))]
for name, b in variants + [("timm eager", eager), ("timm compile (TIMM_FUSED_ATTN=0)", comp),
                           ("loader", loader)]:
    vs = f" ({ips(b) / ips(ours):.3f}x ours)" if b and ours and name in OPTIN_ROWS.values() else ""
    lines.append(f"| {name} images/s | {fmt(ips(b))}{vs} | |")
plan = (bench("memory_plan") or {}).get("memory")
for name, b in variants:
    if b and (b.get("peak_memory_gib") or -1) >= 0:
        vs = (f"; coatnet info plans {plan['total_bytes'] / 2**30:.1f} GiB "
              f"({b['peak_memory_gib'] * 2**30 / plan['total_bytes']:.2f}x)" if plan else "")
        lines.append(f"| {name}: peak memory, allocated by tensors | {b['peak_memory_gib']:.1f} of "
                     f"{fmt(b.get('device_memory_gib'))} GiB{vs} | |")
for name, b in variants:
    if b and b.get("loss_steps_41_50") is not None:
        lines.append(f"| {name}: mean loss of steps 41-50 | {b['loss_steps_41_50']:.4f} | |")
for name, v, goal in goals:
    lines.append(f"| {name} | {fmt(v, '{:.2f}')} | >= {goal} |")
for k in sorted(summary):
    if k.startswith("mfu_"):
        lines.append(f"| {k} | {fmt(summary[k], '{:.1%}')} | |")
lines.append(f"| bf16 matmul 8192^3 TFLOP/s | {fmt(mm and mm['tflops'])} | |")
# The GPU's kernel time per step (profiled) against the unprofiled run's steady step: what is
# left is the GPU waiting for the host (launches, or a wait for the GPU inside the step).
for who, b in variants:
    p = b and b.get("profile")
    if p:
        idle = (f"; the steady step {b['step_ms']:.1f} ms, so {b['step_ms'] - p['busy_ms_per_step']:.1f} ms "
                f"a step without GPU work" if b.get("step_ms") else "")
        lines.append(f"| {who}: GPU busy per step (profile of steps 51-55) | {p['busy_ms_per_step']:.1f} of "
                     f"{p['wall_ms_per_step']:.1f} ms profiled ({p['busy_share']:.0%}), "
                     f"{p['kernels_per_step']:.0f} kernels{idle} | |")
prof = ours and ours.get("profile")
if prof:
    for name, ms, share in prof["top"][:10]:
        lines.append(f"| ours kernel: {name[:70]} | {ms:.2f} ms ({share:.1%}) | |")
# Each opt-in's training step (forward + backward) against the default's, interleaved in one
# process (bench_optins), with its loss on the same batch and weights against the default's.
for row in ("optin_steps", "optin_steps_kernels"):
    for r in (bench(row) or {}).get("optins", []):
        lines.append(f"| {row}: step with {r['variant']} (interleaved) | {r['ms_per_step']:.2f} ms, "
                     f"{r['vs_default']:.3f}x default, loss {r['loss_vs_default']:+.1e} vs default | |")
# What each opt-in changed in the step: the kernels whose time per step moved most against ours
# (among each profile's 30 longest; one absent from a list counts 0 there).
top_ms = lambda b: {t[0]: t[1] for t in ((b or {}).get("profile") or {}).get("top", [])}
for label, b in variants[1:]:
    theirs, mine = top_ms(b), top_ms(ours)
    if not theirs or not mine:
        continue
    moved = sorted(((theirs.get(k, 0) - mine.get(k, 0), k) for k in set(theirs) | set(mine)),
                   key=lambda m: -abs(m[0]))[:5]
    for delta, name in moved:
        lines.append(f"| {label} vs ours: {name[:60]} | {delta:+.2f} ms per step | |")
# What launched our longest kernels (trace_ops.py): operator, where, and its inputs' strides. A
# CUDA graph's replay launches them with no operator around them ("?"): then the eager run's.
def launched(name):
    try:
        ks = json.load(open(f"{out}/ops-{name}.json"))["kernels"][:8]
    except (OSError, ValueError, KeyError):
        return []
    return ks if any(l["op"] != "?" for k in ks for l in k["launched_by"]) else []
who, ops = next(((w, o) for w, o in (("ours", launched("ours")),
                                      ("ours eager", launched("ours_eager"))) if o), ("ours", []))
for k in ops:
    for l in k["launched_by"][:2]:
        lines.append(f"| {who} kernel {k['name'][:50]}: {l['ms_per_step']:.2f} ms from {l['op']} in "
                     f"{(l['within'] or '')[-40:]} | strides {json.dumps(l['strides'])[:90]} | |")
att = bench("attention_composite")
for r in (att or {}).get("shapes", []):
    lines.append(f"| attention fwd+bwd {r['heads']}x{r['n']}x{r['dim_head']}: composite (SDPA's choice / "
                 f"memory-efficient / cuDNN) / with a strided bias / explicit / flash without bias | "
                 f"{fmt(r['composite_ms'], '{:.3f}')} / {fmt(r.get('composite_efficient_ms'), '{:.3f}')} / "
                 f"{fmt(r.get('composite_cudnn_ms'), '{:.3f}')} / "
                 f"{fmt(r.get('composite_strided_bias_ms'), '{:.3f}')} / {fmt(r['explicit_ms'], '{:.3f}')} / "
                 f"{fmt(r['no_bias_flash_ms'], '{:.3f}')} ms | {r.get('composite_cudnn_error', '')[:80]} |")
kernel_errors = []
for k in (kern or {}).get("kernels", []):
    if "error" in k:  # it threw on this GPU; bench_kernels went on with the other rows
        kernel_errors.append(k["kernel"])
        lines.append(f"| {k['kernel']} kernel vs ATen composite | FAIL: {k['error'][:120]} | |")
        continue
    rate = (f"{k['kernel_gb_per_s']:.0f} GB/s" if "kernel_gb_per_s" in k else
            f"{k.get('kernel_tflops', 0):.0f} TFLOP/s")
    lines.append(f"| {k['kernel']} kernel {k['shape']} vs ATen composite | {fmt(k['speedup'], '{:.2f}')}x "
                 f"({k['kernel_ms']:.3f} vs {k['composite_ms']:.3f} ms, {rate}) | > 1 |")
# Nsight Compute's counters of our kernels in a training step (tests/bench/kernel_counters.sh):
# why one is slow (DRAM or SM near its peak, or too few warps).
pct = lambda v: "n/a" if v is None else f"{v:.0f}%"
for k in (bench("kernel_counters") or {}).get("kernels", [])[:16]:
    lines.append(f"| ncu: {k['kernel'][:60]} grid {k['grid']} x{k['launches']} | "
                 f"{fmt(k['ms_each'], '{:.3f}')} ms each, DRAM {pct(k['dram_pct'])}, SM {pct(k['sm_pct'])}, "
                 f"occupancy {pct(k['achieved_occupancy_pct'])} of {pct(k['theoretical_occupancy_pct'])}, "
                 f"{fmt(k['registers'], '{:.0f}')} registers, {fmt(k['shared_kib'], '{:.1f}')} KiB shared | |")
open(f"{out}/gpu-check.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
bad = [r[0] for r in rows if r[1] == "FAIL"] + kernel_errors
sys.exit(1 if bad else 0)
