#!/usr/bin/env python3
"""trace_ops.py on a hand-made Kineto trace: each kernel is credited to the operator whose
External id it carries, with that operator's input dims, strides and dtypes and the outermost
operator around it on its thread; kernels are ranked by total time; per-step figures divide by
--steps; a trace it cannot read is an error naming the file."""
import gzip
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def op(name, ext, tid, ts, dur, **args):
    return {"ph": "X", "cat": "cpu_op", "name": name, "tid": tid, "ts": ts, "dur": dur,
            "args": {"External id": ext, **args}}


def kernel(name, ext, ts, dur):
    return {"ph": "X", "cat": "kernel", "name": name, "tid": 7, "ts": ts, "dur": dur,
            "args": {"External id": ext, "correlation": 1000 + ext}}


events = [
    # backward on the autograd thread: an add of a channels-last and an NCHW gradient
    op("autograd::engine::evaluate_function: MulBackward0", 1, 2, 100, 50),
    op("aten::add", 2, 2, 110, 10, **{"Input Dims": [[2, 8, 4, 4], [2, 8, 4, 4]],
                                     "Input Strides": [[128, 1, 32, 8], [128, 16, 4, 1]],
                                     "Input type": ["c10::BFloat16", "c10::BFloat16"]}),
    # forward on the main thread
    op("aten::gelu", 3, 1, 0, 5, **{"Input Dims": [[2, 8, 4, 4]], "Input Strides": [[128, 1, 32, 8]],
                                   "Input type": ["c10::BFloat16"]}),
    op("aten::add", 4, 1, 20, 5, **{"Input Dims": [[2, 8, 4, 4], [2, 8, 4, 4]],
                                   "Input Strides": [[128, 1, 32, 8], [128, 1, 32, 8]],
                                   "Input type": ["c10::BFloat16", "c10::BFloat16"]}),
    kernel("elementwise_kernel<add>", 2, 200, 300),
    kernel("elementwise_kernel<add>", 2, 600, 300),
    kernel("elementwise_kernel<add>", 4, 1000, 100),
    kernel("gelu_kernel", 3, 1200, 200),
    {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "tid": 2, "ts": 111, "dur": 2,
     "args": {"External id": 2, "correlation": 1002}},
]


def run(path, *extra):
    return subprocess.run([sys.executable, os.path.join(HERE, "trace_ops.py"), path, *extra],
                          capture_output=True, text=True)


with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "trace.json.gz")
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    r = run(path, "--steps", "2", "--top", "2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    names = [k["name"] for k in out["kernels"]]
    assert names == ["elementwise_kernel<add>", "gelu_kernel"], names
    add = out["kernels"][0]
    assert abs(add["ms_per_step"] - 0.35) < 1e-9 and add["calls_per_step"] == 1.5, add
    first, second = add["launched_by"]
    assert first["op"] == "aten::add" and first["within"].endswith("MulBackward0"), first
    assert first["strides"] == [[128, 1, 32, 8], [128, 16, 4, 1]], first
    assert first["types"] == ["c10::BFloat16", "c10::BFloat16"] and first["calls_per_step"] == 1.0
    assert abs(first["ms_per_step"] - 0.3) < 1e-9, first
    assert second["within"] == "aten::add" and second["strides"][1] == [128, 1, 32, 8], second
    assert out["kernels"][1]["launched_by"][0]["op"] == "aten::gelu"

    bad = os.path.join(d, "bad.json")
    open(bad, "w").write("{not json")
    r = run(bad)
    assert r.returncode != 0 and "cannot read " + bad in r.stderr, r.stderr
    r = run(path, "--top", "0")
    assert r.returncode != 0 and "--top" in r.stderr, r.stderr
print("PASS: trace_ops")
