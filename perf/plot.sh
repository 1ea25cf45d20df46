#!/usr/bin/env bash
# PNG plots of a run-matrix.sh output directory (called by run-matrix.sh; can be re-run):
#   throughput_by_size.png   produce msg/s and MB/s by message size (acks x partitions)
#   latency_percentiles.png  latency percentile curves (produce ack, e2e)
#   throughput_over_time.png msg/s per second of every row
# Uses matplotlib from a venv (PERF_VENV, default ~/.cache/tidewater-perf-venv), created with
# `python3 -m venv` and pip on first use.
# Usage: perf/plot.sh OUTDIR
set -euo pipefail
out="${1:?usage: $0 OUTDIR}"
venv="${PERF_VENV:-$HOME/.cache/tidewater-perf-venv}"
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "setting up $venv with matplotlib" >&2
  python3 -m venv "$venv" >&2 || { echo "python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install -q matplotlib >&2 || { echo "pip install matplotlib failed" >&2; exit 1; }
fi
"$venv/bin/python" - "$out" <<'PY'
import json, os, re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = sys.argv[1]
rows = json.load(open(os.path.join(out, "results.json")))

# Throughput by message size.
series = {}
for name, j in rows.items():
    m = re.match(r"produce-acks(\w+)-(\d+)B-(\d+)p$", name)
    if m:
        acks, size, parts = m.group(1), int(m.group(2)), int(m.group(3))
        series.setdefault(f"acks={acks}, {parts}p", []).append((size, j["msgs_per_sec"], j["mb_per_sec"]))
if series:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = sorted({s for v in series.values() for s, _, _ in v})
    width = 0.8 / len(series)
    for i, (label, pts) in enumerate(sorted(series.items())):
        d = {s: (m, b) for s, m, b in pts}
        xs = [k + i * width for k in range(len(sizes))]
        a1.bar(xs, [d.get(s, (0, 0))[0] for s in sizes], width, label=label)
        a2.bar(xs, [d.get(s, (0, 0))[1] for s in sizes], width, label=label)
    for ax, yl in ((a1, "messages/s"), (a2, "MB/s (10^6 B of values)")):
        ax.set_xticks([k + width * (len(series) - 1) / 2 for k in range(len(sizes))])
        ax.set_xticklabels([f"{s} B" for s in sizes])
        ax.set_xlabel("message size"); ax.set_ylabel(yl); ax.grid(axis="y", alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle("produce throughput by message size")
    fig.tight_layout(); fig.savefig(os.path.join(out, "throughput_by_size.png"), dpi=110); plt.close(fig)

# Latency percentile curves: x = 1/(1-p) on a log axis.
fig, ax = plt.subplots(figsize=(9, 5))
plotted = False
for name, j in sorted(rows.items()):
    curve = [(p, ms) for p, ms in j.get("latency_curve_ms", []) if p < 100]
    if not curve or j["mode"] == "consume":
        continue
    ax.plot([1 / (1 - p / 100) for p, _ in curve], [ms for _, ms in curve], marker=".", label=name)
    plotted = True
if plotted:
    ax.set_xscale("log"); ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks); ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99", "99.999"])
    ax.set_xlabel("percentile"); ax.set_ylabel("latency (ms)"); ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7); ax.set_title("latency by percentile (produce: send to ack; e2e: send to consume)")
    fig.tight_layout(); fig.savefig(os.path.join(out, "latency_percentiles.png"), dpi=110)
plt.close(fig)

# Throughput over time: one small panel per row, warm-up shaded.
named = [(n, j.get("timeseries", [])) for n, j in sorted(rows.items()) if j.get("timeseries")]
if named:
    cols = 3
    nrows = (len(named) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(13, 2.4 * nrows), squeeze=False)
    for ax, (name, ts) in zip(axes.flat, named):
        t = [x["t"] for x in ts]
        ax.plot(t, [x["msgs_per_sec"] for x in ts], marker=".", color="tab:blue")
        warm = [x["t"] for x in ts if x.get("warmup")]
        if warm:
            ax.axvspan(0, max(warm), color="0.85", lw=0)
        ax.set_title(name, fontsize=9); ax.set_ylim(bottom=0); ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(named):]:
        ax.axis("off")
    fig.supxlabel("seconds since start (grey: warm-up)"); fig.supylabel("messages/s")
    fig.tight_layout(); fig.savefig(os.path.join(out, "throughput_over_time.png"), dpi=100)
    plt.close(fig)
print("plots:", ", ".join(f for f in sorted(os.listdir(out)) if f.endswith(".png")), file=sys.stderr)
PY
