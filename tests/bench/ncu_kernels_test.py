#!/usr/bin/env python3
"""ncu_kernels.py on a hand-made export in the layout of `ncu --import R --csv --page details`
(ncu's ==PROF== lines before it, rule rows with no metric, numbers with thousands separators,
durations in different units): launches of one kernel at one grid are one row, with their times
summed and their percentages weighted by time; another grid is another row; names lose their
namespaces and parameters, not their template arguments; an export without the metric columns
is an error naming the file."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream",
          "Block Size", "Grid Size", "Device", "CC", "Section Name", "Metric Name", "Metric Unit",
          "Metric Value", "Rule Name", "Rule Type", "Rule Description"]
ELEMT = ("void coatnet::cuda::(anonymous namespace)::bn_gelu_elemt_kernel<__nv_bfloat16, 8>("
         "coatnet::cuda::bn_gelu::Geometry, long, const __nv_bfloat16 *, float *, long)")
ATTN = ("void coatnet::cuda::(anonymous namespace)::relpos_forward_kernel<__nv_bfloat16, 32>("
        "coatnet::cuda::relpos::Shape, coatnet::cuda::relpos::Args<__nv_bfloat16>)")
CHANNELS = ("coatnet::cuda::(anonymous namespace)::bn_gelu_forward_channels_kernel(long, const "
            "float *, const float *, const float *, const float *, float *, float *, float *, "
            "float, float, float)")


def launch(i, name, grid, duration, dram, sm, regs, shared_bytes):
    metrics = [("GPU Speed Of Light Throughput", "Duration", *duration),
               ("GPU Speed Of Light Throughput", "DRAM Throughput", "%", dram),
               ("GPU Speed Of Light Throughput", "Compute (SM) Throughput", "%", sm),
               ("Occupancy", "Achieved Occupancy", "%", "40.5"),
               ("Launch Statistics", "Registers Per Thread", "register/thread", regs),
               ("Launch Statistics", "Dynamic Shared Memory Per Block", "Kbyte/block", shared_bytes),
               ("Launch Statistics", "Static Shared Memory Per Block", "byte/block", "2,048")]
    rows = [[str(i), "4242", "bench_optins", "127.0.0.1", name, "1", "7", "(32, 8, 1)", grid,
             "0", "9.0", sec, metric, unit, value, "", "", ""]
            for sec, metric, unit, value in metrics]
    rows.append([str(i), "4242", "bench_optins", "127.0.0.1", name, "1", "7", "(32, 8, 1)", grid,
                 "0", "9.0", "SpeedOfLight", "", "", "", "SOLBottleneck", "OPT", "memory-bound"])
    return rows


def export(rows, header=HEADER):
    buf = io.StringIO()
    buf.write("==PROF== Connected to process 4242 (bench_optins)\n")
    csv.writer(buf, quoting=csv.QUOTE_ALL).writerows([header] + rows)
    return buf.getvalue()


def run(text):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([sys.executable, os.path.join(HERE, "ncu_kernels.py"), f.name],
                              capture_output=True, text=True), f.name
    finally:
        os.unlink(f.name)


rows = (launch(0, ELEMT, "(2, 264, 1)", ("usecond", "300"), "80", "60", "40", "0") +
        launch(1, ELEMT, "(2, 264, 1)", ("msecond", "0.1"), "40", "20", "40", "0") +
        launch(2, ELEMT, "(4, 264, 1)", ("nsecond", "50,000"), "10", "90", "40", "0") +
        launch(3, ATTN, "(4, 1536, 1)", ("msecond", "1.2"), "30", "70", "72", "57.34") +
        launch(4, CHANNELS, "(3, 1, 1)", ("usecond", "2.5"), "1", "1", "16", "0"))
r, _ = run(export(rows))
assert r.returncode == 0, r.stderr
out = json.loads(r.stdout)
assert out["launches"] == 5, out
k = {(x["kernel"], x["grid"]): x for x in out["kernels"]}
assert set(k) == {("bn_gelu_elemt_kernel<__nv_bfloat16, 8>", "(2, 264, 1)"),
                  ("bn_gelu_elemt_kernel<__nv_bfloat16, 8>", "(4, 264, 1)"),
                  ("relpos_forward_kernel<__nv_bfloat16, 32>", "(4, 1536, 1)"),
                  ("bn_gelu_forward_channels_kernel", "(3, 1, 1)")}, sorted(k)
e = k[("bn_gelu_elemt_kernel<__nv_bfloat16, 8>", "(2, 264, 1)")]
assert e["launches"] == 2 and abs(e["ms_total"] - 0.4) < 1e-9 and abs(e["ms_each"] - 0.2) < 1e-9, e
# weighted by time: (80 * 0.3 + 40 * 0.1) / 0.4 = 70, (60 * 0.3 + 20 * 0.1) / 0.4 = 50
assert abs(e["dram_pct"] - 70) < 1e-9 and abs(e["sm_pct"] - 50) < 1e-9, e
assert abs(e["achieved_occupancy_pct"] - 40.5) < 1e-9 and e["memory_pct"] is None, e
assert e["shared_kib"] == 2.0 and e["registers"] == 40, e
assert abs(k[("bn_gelu_elemt_kernel<__nv_bfloat16, 8>", "(4, 264, 1)")]["ms_total"] - 0.05) < 1e-9
a = k[("relpos_forward_kernel<__nv_bfloat16, 32>", "(4, 1536, 1)")]
assert a["registers"] == 72 and abs(a["shared_kib"] - (57.34 * 1000 + 2048) / 1024) < 1e-9, a
assert [x["kernel"] for x in out["kernels"]][:2] == [
    "relpos_forward_kernel<__nv_bfloat16, 32>", "bn_gelu_elemt_kernel<__nv_bfloat16, 8>"], out
json.loads(r.stdout, parse_constant=lambda c: sys.exit(f"not JSON: {c}"))  # no NaN or Infinity

bad, path = run(export([[str(x) for x in range(5)]], header=HEADER[:5]))
assert bad.returncode != 0 and path in bad.stderr and "Metric Name" in bad.stderr, bad.stderr
print("ncu_kernels: ok")
