#!/usr/bin/env bash
# The run-matrix.sh matrix against two brokers, one after the other, and a markdown table with
# both side by side and the ratio A/B per row (throughput; p99 latency).
# Usage: perf/compare.sh BOOTSTRAP_A BOOTSTRAP_B OUTDIR
# Env:   as run-matrix.sh (BENCH, BENCH_CPU, DURATION, ...); NAME_A / NAME_B label the columns.
#        E2E_RATE fixes the e2e rate for both; by default the e2e rows run at 50% of each
#        broker's own max, so their latencies are at different rates (the table shows both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 3 ] || { echo "usage: $0 BOOTSTRAP_A BOOTSTRAP_B OUTDIR" >&2; exit 2; }
a="$1"; b="$2"; out="$3"; mkdir -p "$out"
na="${NAME_A:-$a}"; nb="${NAME_B:-$b}"
echo "### A: $na" >&2
PLOTS="${PLOTS:-1}" "$here/run-matrix.sh" "$a" "$out/a" > /dev/null
echo "### B: $nb" >&2
PLOTS="${PLOTS:-1}" "$here/run-matrix.sh" "$b" "$out/b" > /dev/null
python3 - "$out" "$na" "$nb" <<'PY'
import json, os, sys
out, na, nb = sys.argv[1:]
A = json.load(open(os.path.join(out, "a", "results.json")))
B = json.load(open(os.path.join(out, "b", "results.json")))
def ratio(x, y):
    return f"{x / y:.2f}" if y else "-"
lines = [
    f"A = {na}, B = {nb}; ratio = A / B (throughput: higher is better for A; p99: lower is better for A)",
    "",
    f"| row | A msg/s | B msg/s | ratio | A MB/s | B MB/s | A p99 ms | B p99 ms | p99 ratio | A rate | B rate |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
for k in sorted(set(A) | set(B)):
    ra, rb = A.get(k), B.get(k)
    if ra is None or rb is None:
        lines.append(f"| {k} | {'missing' if ra is None else round(ra['msgs_per_sec'])} | {'missing' if rb is None else round(rb['msgs_per_sec'])} | - | | | | | | | |")
        continue
    lat = ra["mode"] != "consume"
    pa, pb = ra["latency_ms"]["p99"], rb["latency_ms"]["p99"]
    rate = lambda r: f"{r['config']['rate']:.0f}" if r["config"].get("rate") else "max"
    lines.append(
        f"| {k} | {ra['msgs_per_sec']:.0f} | {rb['msgs_per_sec']:.0f} | {ratio(ra['msgs_per_sec'], rb['msgs_per_sec'])} "
        f"| {ra['mb_per_sec']:.1f} | {rb['mb_per_sec']:.1f} "
        + (f"| {pa:.2f} | {pb:.2f} | {ratio(pa, pb)} " if lat else "| - | - | - ")
        + f"| {rate(ra)} | {rate(rb)} |"
    )
text = "\n".join(lines) + "\n"
open(os.path.join(out, "compare.md"), "w").write(text)
print(text)
PY
