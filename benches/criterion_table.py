#!/usr/bin/env python3
"""Prints the latest criterion results as a Markdown table (median and mean, ns/op).

    python3 benches/criterion_table.py [CRITERION_DIR]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion (or target/criterion). Reads each
benchmark's new/estimates.json; the 95% interval is of the mean.
"""
import json
import os
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else
            Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion")
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    e = json.loads(est.read_text())
    rows.append((bench["full_id"], e["median"]["point_estimate"], e["mean"]["point_estimate"],
                 e["mean"]["confidence_interval"]["lower_bound"],
                 e["mean"]["confidence_interval"]["upper_bound"]))


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 10_000 else f"{ns:.0f} ns"


print("| benchmark | median | mean | mean 95% CI |")
print("|---|---:|---:|---:|")
for name, med, mean, lo, hi in rows:
    print(f"| {name} | {fmt(med)} | {fmt(mean)} | {fmt(lo)} – {fmt(hi)} |")
