"""The bundled load generator (tidewater-bench) and perf/compare.sh against two independent
Kafka implementations: Tidewater, and librdkafka's mock cluster (mock_cluster.py).

Counts are exact: a produce run reports every acknowledged message (`messages_total`), and a
`consume --to-end` of the same topic must read exactly that many back.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.timeout(300)
HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.environ.get("TIDEWATER_BENCH_BIN") or os.path.join(REPO, "target", "release", "tidewater-bench")


@pytest.fixture
def mock_cluster():
    """librdkafka's in-memory mock broker, serving in a child process; yields HOST:PORT."""
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_cluster.py")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.fullmatch(r"bootstrap (\S+)\n", line)
        assert m, f"mock cluster did not start: {line!r}"
        yield m.group(1)
    finally:
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def bench(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    r = subprocess.run([BENCH, *args, "--quiet", "--json", str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RUST_BACKTRACE": "0"})
    assert r.returncode == 0, f"tidewater-bench {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(out.read_text()), r.stderr


def exact_round_trip(tmp_path, bootstrap, topic):
    p, _ = bench(tmp_path, "produce", "produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", "4",
                 "--message-size", "100-300", "--keys", "random", "--acks", "all", "--rate", "20000",
                 "--duration", "2", "--warmup", "0")
    assert p["mode"] == "produce" and p["errors"] == 0
    # 2 s at 20,000/s: the open loop sends on schedule, so nearly all 40,000 are due and acked.
    assert 38_000 <= p["messages"] <= 40_000, p["messages"]
    assert 0 < p["latency_ms"]["p50"] <= p["latency_ms"]["p99"] <= p["latency_ms"]["max"]
    c, _ = bench(tmp_path, "consume", "consume", "--bootstrap", bootstrap, "--topic", topic, "--to-end",
                 "--duration", "60", "--warmup", "0")
    assert c["errors"] == 0
    # --to-end stops at the end offsets it saw at the start, and its rate is over that time: it
    # once waited out the whole duration and divided by it, understating drain throughput.
    assert c["seconds"] < 30, c["seconds"]
    # Every acknowledged message, including acks that came after the window (which `messages`
    # leaves out: under load a few do), is read back, and nothing else.
    assert p["messages"] <= p["messages_total"] <= 40_000
    assert c["messages"] == p["messages_total"], "consume read back a different count than was acknowledged"
    assert c["bytes"] == p["bytes_total"]
    e, _ = bench(tmp_path, "e2e", "e2e", "--bootstrap", bootstrap, "--topic", topic + "-e2e", "--partitions", "4",
                 "--message-size", "100", "--acks", "1", "--rate", "5000", "--duration", "2", "--warmup", "1")
    assert e["mode"] == "e2e" and e["errors"] == 0 and e["messages"] >= 9_000
    # End to end includes a fetch round trip after the produce: never below zero, never absurd.
    assert 0 < e["latency_ms"]["p50"] < 5_000


def test_bench_exact_counts_against_tidewater(broker_1core, tmp_path, topic):
    exact_round_trip(tmp_path, broker_1core.bootstrap, topic)


def test_bench_exact_counts_against_librdkafka_mock(mock_cluster, tmp_path, topic):
    # The mock has no CreateTopics: the generator asks Metadata to auto-create, and says so.
    _, err = bench(tmp_path, "create", "produce", "--bootstrap", mock_cluster, "--topic", topic + "-x",
                   "--partitions", "4", "--rate", "100", "--duration", "1", "--warmup", "0")
    assert "no CreateTopics" in err
    exact_round_trip(tmp_path, mock_cluster, topic)


def test_compare_sh_tidewater_vs_librdkafka_mock(broker_1core, mock_cluster, tmp_path):
    out = tmp_path / "cmp"
    env = {**os.environ, "BENCH": BENCH, "DURATION": "1", "WARMUP": "0", "PLOTS": "0", "CONSUMERS": "1",
           "PRODUCE_RATE": "20000", "NAME_A": "tidewater", "NAME_B": "librdkafka-mock", "RUST_BACKTRACE": "0"}
    r = subprocess.run(["bash", os.path.join(REPO, "perf", "compare.sh"), broker_1core.bootstrap, mock_cluster,
                        str(out)], env=env, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-4000:]
    rows = ([f"produce-acks{a}-{s}B-{p}p" for s in (100, 1024) for p in (1, 16) for a in (1, "all")]
            + [f"consume-{s}B-16p" for s in (100, 1024)] + [f"e2e-acksall-{s}B-16p-half" for s in (100, 1024)])
    for side in ("a", "b"):
        res = json.loads((out / side / "results.json").read_text())
        assert sorted(res) == sorted(rows), f"{side}: rows {sorted(res)}"
        for name, row in res.items():
            assert row["errors"] == 0 and row["messages"] > 0, (side, name, row["errors"], row["messages"])
            if name.startswith("produce"):
                assert row["config"]["rate"] == 20000, (side, name)
    table = (out / "compare.md").read_text()
    assert "A = tidewater, B = librdkafka-mock" in table
    for name in rows:
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {name} |"))
        assert "missing" not in line
        # Same offered load on both: the produce rows' throughput ratio is about 1.
        if name.startswith("produce"):
            ratio = float(line.split("|")[4])
            assert 0.8 <= ratio <= 1.25, line
