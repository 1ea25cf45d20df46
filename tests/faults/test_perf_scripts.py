"""The perf scripts do what perf/README.md says: tune.sh (dry run changes nothing; a real run is
idempotent), baseline.sh (ceilings as JSON), plot.sh (PNGs of a matrix) and flamegraph.sh (an
SVG of a running process). Each installs what it needs itself, as on a fresh host."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERF = os.path.join(ROOT, "perf")

# What tune.sh may change without --shard-cpus on a VM: restored after the real runs.
TUNED = ["/proc/sys/vm/swappiness", "/proc/sys/net/core/somaxconn", "/proc/sys/net/ipv4/tcp_max_syn_backlog",
         "/proc/sys/fs/aio-max-nr", "/sys/kernel/mm/transparent_hugepage/enabled",
         "/sys/kernel/mm/transparent_hugepage/defrag"]
LIMITS = "/etc/security/limits.d/90-tidewater.conf"


def snapshot():
    out = {}
    for f in TUNED + [LIMITS]:
        try:
            with open(f) as fh:
                out[f] = fh.read()
        except OSError:
            out[f] = None
    return out


def restore(saved):
    for f, v in saved.items():
        if f == LIMITS:
            if v is None and os.path.exists(f):
                os.remove(f)
            elif v is not None:
                with open(f, "w") as fh:
                    fh.write(v)
            continue
        if v is None:
            continue
        m = re.search(r"\[(\S+)\]", v)  # sysfs choice lists: "always [madvise] never"
        try:
            with open(f, "w") as fh:
                fh.write(m.group(1) if m else v.strip())
        except OSError:
            pass


def tune(*args):
    r = subprocess.run(["bash", os.path.join(PERF, "tune.sh"), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    done = re.search(r"# done: (would change|changed) (\d+), skipped (\d+)", r.stdout)
    assert done, r.stdout
    return r.stdout, int(done.group(2))


@pytest.mark.skipif(os.geteuid() != 0, reason="tune.sh changes host settings: root only")
def test_tune_dry_run_changes_nothing_and_a_real_run_is_idempotent():
    before = snapshot()
    try:
        out, _ = tune("--dry-run")
        assert "# VM and network" in out and "/proc/sys/vm/swappiness" in out
        assert snapshot() == before, "a dry run changed the host"
        tune()
        after_first = snapshot()
        out, changed = tune()
        # Everything is as wanted already: the second run changes nothing and leaves it so.
        assert changed == 0, out
        assert snapshot() == after_first
        _, would = tune("--dry-run")
        assert would == 0
    finally:
        restore(before)
    assert snapshot() == before


def test_baseline_reports_the_ceilings_as_json():
    d = os.path.join(ROOT, "target", "baseline-test")  # O_DIRECT needs a real filesystem
    os.makedirs(d, exist_ok=True)
    try:
        r = subprocess.run(["bash", os.path.join(PERF, "baseline.sh"), d], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "RUNTIME": "1", "SIZE": "64M", "LOAD_MBPS": "50"})
        j = json.loads(r.stdout)  # the JSON is what counts (iperf3 teardown may exit non-zero)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    for k in ("seq_write_1m_bytes_per_sec", "seq_read_1m_bytes_per_sec", "loopback_bytes_per_sec"):
        assert j[k] > 0, (k, j)
    s = j["fdatasync_4k_latency_us"]
    assert 0 < s["p50"] <= s["p99"] <= s["max"], s


def test_plot_draws_the_three_pngs_of_a_matrix(tmp_path):
    src = os.path.join(PERF, "results", "2026-12-01c-report", "matrix-1shard")
    d = tmp_path / "m"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("*.png"))
    r = subprocess.run(["bash", os.path.join(PERF, "plot.sh"), str(d)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for png in ("throughput_by_size.png", "latency_percentiles.png", "throughput_over_time.png"):
        with open(d / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", png


def test_flamegraph_of_a_busy_process(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 30\nwhile time.time() < t: "
                             "sum(i * i for i in range(1000))"])
    try:
        out = tmp_path / "f.svg"
        r = subprocess.run(["bash", os.path.join(PERF, "flamegraph.sh"), str(busy.pid), "2", str(out)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "FLAMEGRAPH_FALLBACK": "1"})
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        busy.kill()
        busy.wait()
    svg = out.read_text()
    assert "<svg" in svg[:500]
    # Two seconds of a busy interpreter at 999 Hz: many samples over many distinct stacks, and
    # the hottest symbols listed with their share.
    folded = (tmp_path / "f.svg.folded").read_text().splitlines()
    samples = sum(int(ln.rsplit(" ", 1)[1]) for ln in folded)
    assert len(folded) >= 5 and samples >= 500, (len(folded), samples)
    assert re.search(r"^\s+\d+\.\d+%", r.stdout + r.stderr, re.M), r.stdout + r.stderr
