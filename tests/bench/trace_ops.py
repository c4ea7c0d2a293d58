#!/usr/bin/env python3
"""Which operators launched a profile's longest GPU kernels, with their inputs' shapes, strides and
dtypes: what decides whether ATen takes a vectorised kernel or its generic strided one (mixed
channels-last and NCHW operands, broadcasting). Reads a Kineto trace (`coatnet train` with
train.profile_steps writes RUN_DIR/profile/trace.json; gpu-check keeps it gzipped) and prints one
JSON object:

  {"steps": N, "kernels": [{"name", "ms_per_step", "calls_per_step",
                            "launched_by": [{"op", "within", "dims", "strides", "types",
                                             "calls_per_step", "ms_per_step"}, ...]}, ...]}

`op` is the innermost operator whose External id the kernel carries, `within` the outermost
operator around it on its thread (an autograd node such as
"autograd::engine::evaluate_function: MulBackward0" for backward work).

  trace_ops.py RUN_DIR/profile/trace.json [--steps 5] [--top 12] [--launchers 4]
"""
import argparse
import collections
import gzip
import json
import sys


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def outermost_ops(cpu_ops):
    """Maps each CPU op's External id to the outermost op enclosing it on the same thread."""
    by_tid = collections.defaultdict(list)
    for e in cpu_ops:
        by_tid[e.get("tid")].append(e)
    outer = {}
    for events in by_tid.values():
        events.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
        top_end, top_name = -1.0, None
        for e in events:
            if e["ts"] >= top_end:  # not inside the current outermost op: it starts a new one
                top_end, top_name = e["ts"] + e.get("dur", 0), e["name"]
            outer[e["args"].get("External id")] = top_name
    return outer


def summarise(trace, steps, top, launchers):
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    cpu_ops = [e for e in events if e.get("cat") == "cpu_op" and "External id" in e.get("args", {})]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    op_of = {e["args"]["External id"]: e for e in cpu_ops}
    outer = outermost_ops(cpu_ops)
    per_kernel = collections.defaultdict(lambda: {"us": 0.0, "calls": 0,
                                                  "by": collections.defaultdict(lambda: [0, 0.0])})
    for k in kernels:
        s = per_kernel[k["name"]]
        s["us"] += k.get("dur", 0)
        s["calls"] += 1
        op = op_of.get(k.get("args", {}).get("External id"))
        if op is None:
            key = ("?", None, None, None, None)
        else:
            a = op["args"]
            key = (op["name"], outer.get(a["External id"]), json.dumps(a.get("Input Dims")),
                   json.dumps(a.get("Input Strides")), json.dumps(a.get("Input type")))
        s["by"][key][0] += 1
        s["by"][key][1] += k.get("dur", 0)
    rows = sorted(per_kernel.items(), key=lambda kv: -kv[1]["us"])[:top]
    out = []
    for name, s in rows:
        by = sorted(s["by"].items(), key=lambda kv: -kv[1][1])[:launchers]
        out.append({
            "name": name,
            "ms_per_step": s["us"] / 1e3 / steps,
            "calls_per_step": s["calls"] / steps,
            "launched_by": [{"op": op, "within": within,
                             "dims": json.loads(dims) if dims else None,
                             "strides": json.loads(strides) if strides else None,
                             "types": json.loads(types) if types else None,
                             "calls_per_step": n / steps, "ms_per_step": us / 1e3 / steps}
                            for (op, within, dims, strides, types), (n, us) in by],
        })
    return {"steps": steps, "kernels": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", help="trace.json or trace.json.gz (Kineto's chrome trace)")
    ap.add_argument("--steps", type=int, default=1, help="steps the trace holds (for per-step figures)")
    ap.add_argument("--top", type=int, default=12, help="kernels, longest total time first")
    ap.add_argument("--launchers", type=int, default=4, help="launching operators per kernel")
    args = ap.parse_args()
    if args.steps < 1 or args.top < 1 or args.launchers < 1:
        ap.error(f"--steps, --top and --launchers must be at least 1 (got {args.steps}, "
                 f"{args.top}, {args.launchers})")
    try:
        trace = load(args.trace)
    except (OSError, ValueError) as e:
        sys.exit(f"trace_ops.py: cannot read {args.trace}: {e}")
    print(json.dumps(summarise(trace, args.steps, args.top, args.launchers)))


if __name__ == "__main__":
    main()
