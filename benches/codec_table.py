#!/usr/bin/env python3
"""Prints the codec benchmark as a Markdown table (GB/s of data, criterion
medians) with the ratios against ISA-L measured in the same run.

    cargo bench --bench codec --features bench-isal
    python3 benches/codec_table.py [target/criterion]
"""
import json
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
results = {}  # (op, code, len) -> {line: GB/s}
for dirpath, _dirs, files in os.walk(root):
    if "benchmark.json" not in files or not dirpath.endswith("/new"):
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        estimates = json.load(f)
    parts = bench["group_id"].split("/")
    if len(parts) != 3 or not parts[0].startswith(("encode", "reconstruct")):
        continue  # another bench's group (target/criterion is shared)
    op, code, length = parts
    line = bench["function_id"] or bench.get("value_str")
    data_bytes = bench["throughput"]["Bytes"]
    median_ns = estimates["median"]["point_estimate"]
    results.setdefault((op, code, length), {})[line] = data_bytes / median_ns  # bytes/ns = GB/s

columns = [
    ("geoshard-avx512gfni", "gfni"),
    ("geoshard-avx2gfni", "avx2gfni"),
    ("geoshard-avx2", "avx2"),
    ("geoshard-ssse3", "ssse3"),
    ("geoshard-scalar", "scalar"),
    ("reed-solomon-erasure", "rse"),
    ("reed-solomon-simd", "rs-simd"),
    ("isal", "ISA-L"),
    ("isal-avx2gfni", "ISA-L avx2gfni"),
    ("isal-avx2", "ISA-L avx2"),
]
op_order = {"encode": 0}
length_order = {"4KiB": 0, "64KiB": 1, "1MiB": 2}


def code_key(code):
    k, m = map(int, re.findall(r"\d+", code))
    return (k, m)


def key(item):
    op, code, length = item
    return (0 if op == "encode" else 1 if op == "reconstruct-1" else 2, code_key(code), length_order[length])


print("| op | code | column | " + " | ".join(c[1] for c in columns) + " | gfni / ISA-L | avx2gfni / ISA-L avx2gfni | avx2 / ISA-L avx2 |")
print("|" + " --- |" * (3 + len(columns) + 3))
for item in sorted(results, key=key):
    row = results[item]
    cells = []
    for name, _ in columns:
        cells.append(f"{row[name]:.2f}" if name in row else "-")

    def ratio(a, b):
        return f"{row[a] / row[b]:.2f}x" if a in row and b in row else "-"

    op, code, length = item
    op_label = op if op != "reconstruct-1" else "reconstruct 1"
    if op.startswith("reconstruct-") and op != "reconstruct-1":
        op_label = "reconstruct " + op.split("-")[1] + " (m)"
    print(f"| {op_label} | {code} | {length} | " + " | ".join(cells)
          + f" | {ratio('geoshard-avx512gfni', 'isal')} | {ratio('geoshard-avx2gfni', 'isal-avx2gfni')}"
          + f" | {ratio('geoshard-avx2', 'isal-avx2')} |")
