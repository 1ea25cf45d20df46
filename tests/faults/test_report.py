"""perf/report.py: ratios against the same run's ceilings and target verdicts, on known inputs
and on a committed report directory."""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(ROOT, "perf", "report.py")


def row(mode, msgs, mb, p99=1.0, p999=2.0, rss_kib=None, size=1024, partitions=16):
    r = {"mode": mode, "msgs_per_sec": msgs, "mb_per_sec": mb, "errors": 0,
         "latency_ms": {"p50": 0.5, "p99": p99, "p99_9": p999, "max": 9.0},
         "config": {"message_size": str(size), "partitions": partitions}}
    if rss_kib:
        r["broker_rss_kib_max"] = rss_kib
    return r


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def run(d):
    subprocess.run([sys.executable, REPORT, str(d)], check=True, capture_output=True, text=True, timeout=60)
    return (d / "REPORT.md").read_text()


def line(md, start, count=1, pick=0):
    """Cells of the `pick`th of exactly `count` table lines starting with `start`."""
    hits = [ln for ln in md.splitlines() if ln.startswith(start)]
    assert len(hits) == count, (start, hits)
    return [c.strip() for c in hits[pick].strip("|").split("|")]


def test_ratios_and_verdicts_on_known_inputs(tmp_path):
    # Disk write 2.0 GB/s, read 1.0 GB/s, loopback 4.0 GB/s.
    write(tmp_path / "baseline.json", {"seq_write_1m_bytes_per_sec": 2e9, "seq_read_1m_bytes_per_sec": 1e9,
                                       "loopback_bytes_per_sec": 4e9,
                                       "fdatasync_4k_latency_us": {"p50": 20, "p99": 60}})
    write(tmp_path / "generator-dry-run-1024B-16p.json",
          {"msgs_per_sec": 2_000_000, "mb_per_sec": 2048.0, "config": {"message_size": "1024", "partitions": 16}})
    write(tmp_path / "matrix-1shard" / "results.json", {
        "produce-acks1-100B-16p": row("produce", 2_500_000, 250.0, rss_kib=300 * 1024, size=100),
        "produce-acksall-1024B-16p": row("produce", 1_000_000, 1100.0, rss_kib=400 * 1024),
        "produce-acks1-1024B-16p": row("produce", 1_200_000, 1228.8),
        "consume-1024B-16p": row("consume", 1_100_000, 900.0),
        "e2e-acksall-1024B-16p-half": row("e2e", 500_000, 512.0, p99=1.5, p999=6.0),
    })
    md = run(tmp_path)
    # 1100 MB/s over min(2.0 disk, 4.0 loopback) GB/s; 1.0 M over the generator's 2.0 M msg/s.
    assert line(md, "| produce-acksall-1024B-16p |")[3:5] == ["55.0%", "50.0%"]
    # Consume rows against min(read 1.0, loopback 4.0).
    assert line(md, "| consume-1024B-16p |")[3] == "90.0%"
    assert line(md, "| 1 shard | produce 100 B")[3] == "met"
    assert line(md, "| 1 shard | produce 1 KiB acks=all")[3] == "not met"  # 55% < 60%
    # Consume 1.1 M against the faster of 1.0 M (acks=all) and 1.2 M (acks=1): 91.7%.
    c = line(md, "| 1 shard | consume 1024 B")
    assert "91.7%" in c[2] and c[3] == "not met"
    # p99 1.5 <= 2 but p99.9 6.0 > 5.
    assert line(md, "| 1 shard | e2e 1024 B")[3] == "not met"
    r = line(md, "| 1 shard | broker RSS")
    assert "400 MiB" in r[2] and r[3] == "met"
    # What was not there is said, not silently skipped.
    assert "matrix-2shard/results.json" in md and "flame-top.txt" in md


def test_a_committed_report_directory_parses(tmp_path):
    src = os.path.join(ROOT, "perf", "results", "2026-12-01c-report")
    d = tmp_path / "r"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("*.svg", "*.folded", "*.csv", "*.png"))
    md = run(d)
    for section in ("## Ceilings", "## One shard", "## Two shards", "## Targets", "## The disk's acks=all",
                    "## Flamegraph top"):
        assert section in md
    # That run, one shard then two: 795.2 and 642.9 MB/s of 1 KiB acks=all over its 1.32 GB/s
    # disk ceiling.
    assert line(md, "| produce-acksall-1024B-16p |", count=2, pick=0)[3] == "60.0%"
    assert line(md, "| produce-acksall-1024B-16p |", count=2, pick=1)[3] == "48.5%"
    assert "Not in this directory" not in md
