#!/usr/bin/env python3
"""Nsight Compute's per-launch counters (`ncu --import R.ncu-rep --csv --page details`), summed up
per kernel and launch shape, as one JSON line:

  {"launches": N, "kernels": [{"kernel", "grid", "block", "launches", "ms_each", "ms_total",
                               "dram_pct", "sm_pct", "memory_pct", "achieved_occupancy_pct",
                               "theoretical_occupancy_pct", "registers", "shared_kib"}, ...]}

longest in total first. Percentages are of the GPU's peak (ncu's Speed Of Light section), averaged
over the launches with each launch's time as its weight; a metric the report lacks is null.
`kernel` is the function's name with its template arguments, without namespaces or parameters.

  ncu_kernels.py kernels-ncu.csv [--top 40]
"""
import argparse
import collections
import csv
import json
import re
import sys

# ncu's metric names (its Speed Of Light, Occupancy and Launch Statistics sections) -> our keys.
WEIGHTED = {"DRAM Throughput": "dram_pct", "Compute (SM) Throughput": "sm_pct",
            "Memory Throughput": "memory_pct", "Achieved Occupancy": "achieved_occupancy_pct",
            "Theoretical Occupancy": "theoretical_occupancy_pct"}
LAUNCH = {"Registers Per Thread": "registers"}
SHARED = ("Static Shared Memory Per Block", "Dynamic Shared Memory Per Block")
TO_MS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0,
         "s": 1e3, "second": 1e3}
TO_KIB = {"byte": 1 / 1024, "Kbyte": 1000 / 1024, "KB": 1000 / 1024, "Kibyte": 1.0, "KiB": 1.0,
          "Mbyte": 1e6 / 1024, "MB": 1e6 / 1024}


def number(text):
    """ncu writes '1,234.5' in its CSV; 'n/a' where a value does not apply."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def kib(unit, value):
    """('Kbyte/block', '57.34') -> 56.0; None for a unit not known here."""
    v, per = number(value), TO_KIB.get(unit.split("/")[0])
    return v * per if v is not None and per is not None else None


def short_name(name):
    """'void ns::(anonymous namespace)::k<float, 8>(ns::Shape, float*)' -> 'k<float, 8>'."""
    name = re.sub(r"^void ", "", name.strip())
    depth, end = 0, len(name)
    for i, c in enumerate(name):  # the parameter list: the first '(' outside template brackets
        depth += (c == "<") - (c == ">")
        if c == "(" and depth == 0 and not name.startswith("(anonymous namespace)", i):
            end = i
            break
    head = name[:end]
    depth, cut = 0, 0
    for i, c in enumerate(head):  # the last '::' outside template brackets
        depth += (c == "<") - (c == ">")
        if depth == 0 and head.startswith("::", i):
            cut = i + 2
    return head[cut:]


def launches(path):
    """{launch id: {"name", "grid", "block", "metrics": {metric: (unit, value)}}}"""
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own ==PROF== lines are not CSV
    if not lines:
        raise ValueError(f"{path}: no CSV rows (is it `ncu --import ... --csv --page details`?)")
    rows = csv.DictReader(lines)
    need = {"ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"}
    if not need <= set(rows.fieldnames or ()):
        raise ValueError(f"{path}: columns {sorted(need - set(rows.fieldnames or ()))} missing "
                         f"from the header {rows.fieldnames}")
    out = {}
    for r in rows:
        if not r["Metric Name"]:
            continue  # a rule's row, not a metric
        l = out.setdefault(r["ID"], {"name": short_name(r["Kernel Name"]),
                                     "grid": r.get("Grid Size", ""),
                                     "block": r.get("Block Size", ""), "metrics": {}})
        l["metrics"][r["Metric Name"]] = (r["Metric Unit"], r["Metric Value"])
    return out


def ms_of(metrics):
    """A launch's duration in milliseconds; None when the report lacks it."""
    unit, value = metrics.get("Duration", ("", ""))
    v = number(value)
    return v * TO_MS[unit] if v is not None and unit in TO_MS else None


def summarise(by_id, top):
    groups = collections.OrderedDict()
    for l in by_id.values():
        groups.setdefault((l["name"], l["grid"], l["block"]), []).append(l["metrics"])
    kernels = []
    for (name, grid, block), ms in groups.items():
        times = [ms_of(m) for m in ms]
        known = [t for t in times if t is not None]
        row = {"kernel": name, "grid": grid, "block": block, "launches": len(ms),
               "ms_each": sum(known) / len(known) if known else None,
               "ms_total": sum(known) if known else None}
        for metric, key in WEIGHTED.items():
            pairs = [(number(m[metric][1]), t or 1.0) for m, t in zip(ms, times) if metric in m]
            pairs = [(v, w) for v, w in pairs if v is not None]
            row[key] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None
        for metric, key in LAUNCH.items():
            row[key] = number(ms[0][metric][1]) if metric in ms[0] else None
        shared = [kib(*ms[0][s]) for s in SHARED if s in ms[0]]
        shared = [v for v in shared if v is not None]
        row["shared_kib"] = sum(shared) if shared else None
        kernels.append(row)
    kernels.sort(key=lambda k: -(k["ms_total"] or 0))
    return {"launches": len(by_id), "kernels": kernels[:top]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    try:
        print(json.dumps(summarise(launches(a.csv), a.top)))
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"ncu_kernels: {e}")


if __name__ == "__main__":
    main()
