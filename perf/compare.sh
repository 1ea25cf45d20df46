#!/usr/bin/env bash
# The workload matrix against two brokers, side by side with the ratio per row (markdown).
# Usage: perf/compare.sh BOOTSTRAP_A BOOTSTRAP_B OUTDIR
set -euo pipefail
a="$1"; b="$2"; out="$3"
"$(dirname "$0")/run-matrix.sh" "$a" "$out/a"
"$(dirname "$0")/run-matrix.sh" "$b" "$out/b"
python3 - "$out" "$a" "$b" <<'PY'
import json, os, sys
out, a, b = sys.argv[1:]
A = json.load(open(os.path.join(out, 'a', 'results.json'))); B = json.load(open(os.path.join(out, 'b', 'results.json')))
lines = [f"| workload | {a} msg/s | {b} msg/s | ratio | {a} p99 ms | {b} p99 ms |", "|---|---|---|---|---|---|"]
for k in A:
    if k in B:
        ra, rb = A[k]['msgs_per_sec'], B[k]['msgs_per_sec']
        lines.append(f"| {k} | {ra:.0f} | {rb:.0f} | {ra / max(rb, 1e-9):.2f} | {A[k]['latency_ms']['p99']:.2f} | {B[k]['latency_ms']['p99']:.2f} |")
open(os.path.join(out, 'compare.md'), 'w').write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
