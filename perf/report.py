#!/usr/bin/env python3
"""Writes OUTDIR/REPORT.md from what perf/run-report.sh left in OUTDIR: every matrix figure
beside the ceilings measured in the same run, as a ratio, and the targets checked.

Reads baseline.json (fio, iperf3), generator-dry-run-*.json, matrix-1shard/ and matrix-2shard/
results.json, ack-floor-*.json, flame-top.txt and, if present, storage-vs-fio.json. Anything
missing is left out of the report and said so.

Ratios: produce rows against min(disk sequential write, loopback); consume rows against
min(disk sequential read, loopback) (the matrix's consume rows drain topics far larger than the
cache, from disk); produce rows also against the generator's own ceiling for the same message
size and partition count (--dry-run).

Usage: perf/report.py OUTDIR [--shard-memory-mib 512]   (per-shard budget: the request memory
       plus the read cache, 256 + 256 MiB by default)
"""
import argparse
import glob
import json
import os

TARGET_100B_MSGS = 2_000_000
TARGET_1K_ACKS_ALL_RATIO = 0.60
TARGET_E2E_P99_MS = 2.0
TARGET_E2E_P999_MS = 5.0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def row_shape(name):
    """(mode, size, partitions) from a matrix row name such as produce-acksall-1024B-16p."""
    parts = name.split("-")
    size = int(next(p for p in parts if p.endswith("B"))[:-1])
    partitions = int(next(p for p in parts if p.endswith("p") and p[:-1].isdigit())[:-1])
    return parts[0], size, partitions


def pct(x):
    return f"{100 * x:.1f}%"


def matrix_table(rows, ceiling, dry):
    """`ceiling`: bytes/s by mode (produce, consume); `dry`: generator ceilings by (size, parts)."""
    lines = ["| row | msg/s | MB/s | vs ceiling | vs generator | p50 ms | p99 ms | p99.9 ms | max ms | RSS MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        mode, size, parts = row_shape(name)
        c = ceiling.get(mode)
        vs_ceiling = pct(r["mb_per_sec"] * 1e6 / c) if c else "-"
        gen = dry.get((size, parts)) if mode == "produce" else None
        vs_gen = pct(r["msgs_per_sec"] / gen["msgs_per_sec"]) if gen and gen["msgs_per_sec"] else "-"
        if mode == "consume":
            lat = ["-"] * 4
        else:
            l = r["latency_ms"]
            lat = [f"{l[q]:.2f}" for q in ("p50", "p99", "p99_9", "max")]
        rss = f"{r['broker_rss_kib_max'] / 1024:.0f}" if "broker_rss_kib_max" in r else "-"
        lines.append(f"| {name} | {r['msgs_per_sec']:,.0f} | {r['mb_per_sec']:.1f} | {vs_ceiling} | {vs_gen} | "
                     + " | ".join(lat) + f" | {rss} |")
    return lines


def targets(rows, shards, produce_ceiling, shard_memory_mib):
    """[(target, figure, verdict)] for one matrix."""
    out = []
    hundred = [r["msgs_per_sec"] for n, r in rows.items() if n.startswith("produce") and row_shape(n)[1] == 100]
    if hundred:
        best = max(hundred)
        out.append((f"produce 100 B >= {TARGET_100B_MSGS:,} msg/s",
                    f"best row {best:,.0f} msg/s (rows {min(hundred):,.0f}-{best:,.0f})",
                    "met" if best >= TARGET_100B_MSGS else "not met"))
    k_all = {n: r for n, r in rows.items() if n.startswith("produce-acksall-1024B")}
    if k_all and produce_ceiling:
        name, r = max(k_all.items(), key=lambda kv: kv[1]["mb_per_sec"])
        ratio = r["mb_per_sec"] * 1e6 / produce_ceiling
        out.append((f"produce 1 KiB acks=all >= {pct(TARGET_1K_ACKS_ALL_RATIO)} of min(disk, loopback)",
                    f"{name}: {r['mb_per_sec']:.1f} MB/s = {pct(ratio)} of {produce_ceiling / 1e9:.2f} GB/s",
                    "met" if ratio >= TARGET_1K_ACKS_ALL_RATIO else "not met"))
    for size in (100, 1024):
        c = rows.get(f"consume-{size}B-16p")
        produced = [rows.get(f"produce-acks{a}-{size}B-16p") for a in ("1", "all")]
        produced = [p for p in produced if p]
        if c and produced:
            worst = min(c["msgs_per_sec"] / p["msgs_per_sec"] for p in produced if p["msgs_per_sec"])
            out.append((f"consume {size} B >= produce (16 p, acks=1 and all)",
                        f"{c['msgs_per_sec']:,.0f} msg/s = {pct(worst)} of the faster produce row",
                        "met" if worst >= 1.0 else "not met"))
    for size in (100, 1024):
        e = rows.get(f"e2e-acksall-{size}B-16p-half")
        if e:
            l = e["latency_ms"]
            ok = l["p99"] <= TARGET_E2E_P99_MS and l["p99_9"] <= TARGET_E2E_P999_MS
            out.append((f"e2e {size} B at 50% of max: p99 <= {TARGET_E2E_P99_MS:g} ms, p99.9 <= {TARGET_E2E_P999_MS:g} ms",
                        f"p99 {l['p99']:.2f} ms, p99.9 {l['p99_9']:.2f} ms", "met" if ok else "not met"))
    rss = [r["broker_rss_kib_max"] / 1024 for r in rows.values() if "broker_rss_kib_max" in r]
    if rss:
        budget = shards * shard_memory_mib
        out.append((f"broker RSS <= {shards} x {shard_memory_mib} MiB", f"peak {max(rss):.0f} MiB",
                    "met" if max(rss) <= budget else "not met"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--shard-memory-mib", type=int, default=512)
    a = ap.parse_args()
    d = a.outdir
    missing = []
    md = [f"# Benchmark report: `{os.path.basename(os.path.normpath(d))}`", "",
          "Generated by `perf/report.py` from the files `perf/run-report.sh` wrote beside this one.", ""]

    base = load(os.path.join(d, "baseline.json"))
    ceiling = {}
    if base:
        write_bps = base.get("seq_write_1m_bytes_per_sec")
        read_bps = base.get("seq_read_1m_bytes_per_sec")
        loop_bps = base.get("loopback_bytes_per_sec")
        if write_bps and loop_bps:
            ceiling["produce"] = min(write_bps, loop_bps)
        if read_bps and loop_bps:
            ceiling["consume"] = min(read_bps, loop_bps)
        md += ["## Ceilings (same run)", "", "| ceiling | value |", "| --- | --- |"]
        for label, v in (("disk sequential write, 1 MiB O_DIRECT", write_bps),
                         ("disk sequential read, 1 MiB O_DIRECT", read_bps),
                         ("loopback TCP (iperf3)", loop_bps)):
            md.append(f"| {label} | {v / 1e9:.2f} GB/s |" if v else f"| {label} | - |")
        sync = base.get("fdatasync_4k_latency_us")
        if sync:
            md.append(f"| 4 KiB write + fdatasync: fdatasync p50 / p99 | {sync['p50']:.0f} / {sync['p99']:.0f} µs |")
        md.append("")
    else:
        missing.append("baseline.json")

    dry = {}
    for f in sorted(glob.glob(os.path.join(d, "generator-dry-run-*.json"))):
        j = load(f)
        if j:
            dry[(int(j["config"]["message_size"]), int(j["config"]["partitions"]))] = j
    if dry:
        md += ["## The generator's own ceiling (`--dry-run`, no broker)", "", "| message size | partitions | msg/s | MB/s |",
               "| --- | --- | --- | --- |"]
        for (size, parts), j in sorted(dry.items()):
            md.append(f"| {size} B | {parts} | {j['msgs_per_sec']:,.0f} | {j['mb_per_sec']:.1f} |")
        md.append("")
    else:
        missing.append("generator-dry-run-*.json")

    verdicts = []
    matrices = {}
    for sub, shards, label in (("matrix-1shard", 1, "One shard (CPU 0), generator on CPU 1"),
                               ("matrix-2shard", 2, "Two shards (both CPUs), generator unpinned")):
        rows = load(os.path.join(d, sub, "results.json"))
        if not rows:
            missing.append(f"{sub}/results.json")
            continue
        matrices[sub] = rows
        md += [f"## {label} (`{sub}/`)", ""]
        # The dry run is pinned to one CPU: only the pinned one-shard generator compares with it.
        md += matrix_table(rows, ceiling, dry if shards == 1 else {})
        md.append("")
        verdicts += [(f"{shards} shard{'s' if shards > 1 else ''}",) + t
                     for t in targets(rows, shards, ceiling.get("produce"), a.shard_memory_mib)]

    if verdicts:
        md += ["## Targets", "", "| broker | target | figure | verdict |", "| --- | --- | --- | --- |"]
        md += [f"| {b} | {t} | {f} | {v} |" for b, t, f, v in verdicts]
        md.append("")

    floors = sorted(glob.glob(os.path.join(d, "ack-floor-*.json")))
    if floors:
        md += ["## The disk's acks=all latency floor (`perf/ack-floor.py`, no broker)", "",
               "| at the rate of | MB/s | ack p50 / p99 / p99.9 ms | single write p99 / p99.9 ms | broker e2e p99 / p99.9 ms |",
               "| --- | --- | --- | --- | --- |"]
        one = matrices.get("matrix-1shard", {})
        for f in floors:
            j = load(f)
            if not j:
                continue
            row = os.path.basename(f)[len("ack-floor-"):-len(".json")]
            a_l, w_l = j["ack_latency_ms"], j["write_latency_ms"]
            e = one.get(row, {}).get("latency_ms")
            broker = f"{e['p99']:.1f} / {e['p99_9']:.1f}" if e else "-"
            md.append(f"| {row} | {j['mb_per_sec']:.0f} | {a_l['p50']:.1f} / {a_l['p99']:.1f} / {a_l['p99_9']:.1f} | "
                      f"{w_l['p99']:.1f} / {w_l['p99_9']:.1f} | {broker} |")
        md.append("")

    svf = load(os.path.join(d, "storage-vs-fio.json"))
    if svf:
        md += ["## Storage engine against fio (`perf/storage-vs-fio.sh`)", "", "| ratio | value |", "| --- | --- |"]
        md += [f"| {k} | {v} |" for k, v in svf.get("ratios", {}).items()]
        md.append("")

    try:
        with open(os.path.join(d, "flame-top.txt")) as f:
            top = [ln.rstrip() for ln in f if "%" in ln][:10]
        md += ["## Flamegraph top (`flame-produce-1k-acksall.svg`, self time)", "", "```"] + top + ["```", ""]
    except OSError:
        missing.append("flame-top.txt")

    if missing:
        md += ["Not in this directory, so not in the report: " + ", ".join(missing) + ".", ""]
    with open(os.path.join(d, "REPORT.md"), "w") as f:
        f.write("\n".join(md))
    print(os.path.join(d, "REPORT.md"))


if __name__ == "__main__":
    main()
