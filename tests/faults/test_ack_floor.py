"""perf/ack-floor.py (the disk's acks=all latency floor) runs, measures and cleans up."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ack_floor_reports_every_request_and_leaves_nothing_behind():
    # O_DIRECT needs a real filesystem (tmpfs refuses it): use the build directory.
    d = os.path.join(ROOT, "target", "ack-floor-test")
    os.makedirs(d, exist_ok=True)
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "perf", "ack-floor.py"), "--dir", d,
         "--partitions", "3", "--mb-per-sec", "20", "--requests-per-sec", "200",
         "--seconds", "1", "--warmup", "0.2"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    j = json.loads(out)
    # 200 requests/s for 1 s after the warm-up, each acknowledged once all 3 appends are durable.
    assert abs(j["requests"] - 200) <= 1, j
    # Appends that arrive during a write are coalesced into the next: at most one write per
    # append (about 240 requests with the warm-up, one more for rounding at the edge).
    assert 1 <= j["writes"] <= 3 * 242, j
    for key in ("ack_latency_ms", "write_latency_ms"):
        l = j[key]
        assert 0 < l["p50"] <= l["p99"] <= l["p99_9"] <= l["max"], j
    # A request waits for its slowest partition: never less than the typical single write.
    assert j["ack_latency_ms"]["p50"] >= j["write_latency_ms"]["p50"] * 0.5, j
    assert os.listdir(d) == [], "the model's segment files are removed"
