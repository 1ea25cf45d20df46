"""The checker on synthetic histories: a clean one, then one per anomaly kind."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from checker import check  # noqa: E402


def ack(v, p, o, w="p0"):
    return {"t": "ack", "w": w, "v": v, "p": p, "o": o}


def assign(p, o=0, w="c0", s=1):
    return {"t": "assign", "w": w, "s": s, "p": p, "o": o}


def poll(v, p, o, w="c0", s=1):
    return {"t": "poll", "w": w, "s": s, "p": p, "o": o, "v": v}


def clean_history():
    h = [assign(0), assign(1)]
    for i in range(5):
        h.append(ack(f"p0-{i}", 0, i))
    for i in range(3):
        h.append(ack(f"p1-{i}", 1, i, w="p1"))
    for i in range(5):
        h.append(poll(f"p0-{i}", 0, i))
    for i in range(3):
        h.append(poll(f"p1-{i}", 1, i))
    # a failed and an unknown write that were never read are fine
    h.append({"t": "fail", "w": "p0", "v": "p0-9", "err": "timeout"})
    h.append({"t": "unknown", "w": "p0", "v": "p0-10"})
    # a second session re-reading from 0 after a seek is fine
    h.append(assign(0, 0, w="c1", s=2))
    for i in range(5):
        h.append(poll(f"p0-{i}", 0, i, w="c1", s=2))
    h.append({"t": "hw", "p": 0, "o": 5})
    return h


def only(res, kind):
    counts = {k: v for k, v in res.counts().items() if v}
    assert kind in counts, res.summary()
    return counts


def test_clean_history_has_no_anomalies():
    res = check(clean_history())
    assert res.ok, res.summary()
    assert res.stats["acked"] == 8 and res.stats["failed"] == 1 and res.stats["unknown"] == 1


def test_lost_write():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(4)]
    h += [poll("v0", 0, 0), poll("v1", 0, 1), poll("v3", 0, 3)]  # v2 acked at 2, never read
    # a second session reads the same (so the first session's skip is not the only signal)
    h += [assign(0, 0, "c1", 2), poll("v0", 0, 0, "c1", 2), poll("v1", 0, 1, "c1", 2), poll("v3", 0, 3, "c1", 2)]
    res = check(h)
    assert res.counts()["lost-write"] == 1
    assert res.anomalies["lost-write"][0]["value"] == "v2"
    assert res.counts()["unseen"] == 0


def test_unseen():
    h = [assign(0), ack("v0", 0, 0), ack("v1", 0, 1), poll("v0", 0, 0)]
    res = check(h)
    assert res.counts() == {**{k: 0 for k in res.counts()}, "unseen": 1}
    assert res.anomalies["unseen"][0]["value"] == "v1"


def test_duplicate_across_reads():
    h = [assign(0), ack("v0", 0, 0), poll("v0", 0, 0), poll("v0", 0, 1)]
    res = check(h)
    only(res, "duplicate")
    assert res.anomalies["duplicate"][0]["value"] == "v0"


def test_duplicate_ack_vs_read():
    h = [assign(0), ack("v0", 0, 0), ack("v1", 0, 1), poll("v1", 0, 0), poll("v1", 0, 1)]
    res = check(h)
    assert res.counts()["duplicate"] >= 1


def test_inconsistent_offset_across_polls():
    h = [assign(0), poll("a", 0, 0), assign(0, 0, "c1", 2), poll("b", 0, 0, "c1", 2)]
    res = check(h)
    assert res.counts()["inconsistent-offset"] == 1
    assert res.anomalies["inconsistent-offset"][0]["values"] == ["a", "b"]


def test_inconsistent_offset_ack_vs_read():
    # the broker acked "a" at offset 0 but serves "b" there (e.g. state lost on restart)
    h = [assign(0), ack("a", 0, 0), ack("b", 0, 0, w="p1"), poll("b", 0, 0)]
    res = check(h)
    assert res.counts()["inconsistent-offset"] == 1
    assert res.counts()["unseen"] == 1  # and "a" is gone


def test_nonmonotonic_poll():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(3)]
    h += [poll("v0", 0, 0), poll("v1", 0, 1), poll("v2", 0, 2), poll("v1", 0, 1)]
    res = check(h)
    assert res.counts()["nonmonotonic-poll"] == 1
    a = res.anomalies["nonmonotonic-poll"][0]
    assert (a["offset"], a["previous"]) == (1, 2)


def test_seek_resets_monotonicity():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(3)]
    h += [poll("v0", 0, 0), poll("v1", 0, 1), poll("v2", 0, 2), assign(0, 1), poll("v1", 0, 1), poll("v2", 0, 2)]
    assert check(h).ok


def test_poll_skip():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(4)]
    h += [poll("v0", 0, 0), poll("v3", 0, 3)]  # c0 jumps over 1 and 2
    h += [assign(0, 0, "c1", 2)] + [poll(f"v{i}", 0, i, "c1", 2) for i in range(4)]
    res = check(h)
    assert res.counts()["poll-skip"] == 1
    a = res.anomalies["poll-skip"][0]
    assert (a["worker"], a["from"], a["to"]) == ("c0", 0, 3)
    assert res.counts()["lost-write"] == 0


def test_skip_from_assign_start():
    h = [ack("v0", 0, 0), ack("v1", 0, 1), assign(0, 0), poll("v1", 0, 1)]
    res = check(h)
    assert res.counts()["poll-skip"] == 1


def test_gap_that_never_existed_is_not_a_skip():
    h = [assign(0), ack("v0", 0, 0), ack("v5", 0, 5), poll("v0", 0, 0), poll("v5", 0, 5)]
    assert check(h).ok


def test_cli_exit_codes(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(e) for e in clean_history()) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(e) for e in [assign(0), ack("v0", 0, 0), ack("v1", 0, 1), poll("v1", 0, 1)]) + "\n{torn")
    checker = os.path.join(os.path.dirname(__file__), "checker.py")
    r = subprocess.run([sys.executable, checker, str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, checker, str(bad), "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "poll-skip" in r.stdout and "lost-write" in r.stdout
    assert json.loads(out.read_text())["counts"]["lost-write"] == 1


def test_unseen_in_final_read_after_being_read():
    # read during the test, then gone (the broker lost it): the final read does not have it
    h = [assign(0), ack("v0", 0, 0), ack("v1", 0, 1), poll("v0", 0, 0), poll("v1", 0, 1)]
    h += [{"t": "final", "w": "final", "s": 0}, assign(0, 0, "final", 0), poll("v0", 0, 0, "final", 0),
          {"t": "hw", "p": 0, "o": 1}]
    res = check(h)
    assert res.counts()["unseen"] == 1
    assert res.anomalies["unseen"][0]["value"] == "v1"
    assert "final read" in res.anomalies["unseen"][0]["why"]


def test_one_nonmonotonic_anomaly_per_backward_jump():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(5)]
    h += [poll(f"v{i}", 0, i) for i in range(5)] + [poll(f"v{i}", 0, i) for i in range(5)]
    res = check(h)
    assert res.counts()["nonmonotonic-poll"] == 1


def gpoll(v, p, o, w="g0"):
    return {"t": "gpoll", "w": w, "p": p, "o": o, "v": v}


def group_history():
    h = [assign(0)] + [ack(f"v{i}", 0, i) for i in range(6)]
    h += [poll(f"v{i}", 0, i) for i in range(6)]
    # g0 reads 0..3 and commits 4; a rebalance hands the partition to g1, which re-reads 3 (at
    # least once) and goes on to the end
    h += [gpoll(f"v{i}", 0, i) for i in range(4)] + [{"t": "commit", "w": "g0", "p": 0, "o": 4}]
    h += [gpoll(f"v{i}", 0, i, "g1") for i in range(3, 6)] + [{"t": "commit", "w": "g1", "p": 0, "o": 6}]
    return h


def test_group_rereads_after_rebalance_are_fine():
    res = check(group_history() + [{"t": "committed", "p": 0, "o": 6}])
    assert res.ok, res.summary()
    assert res.stats["group_read"] == 6


def test_lost_commit():
    res = check(group_history() + [{"t": "committed", "p": 0, "o": 4}])
    assert {k: v for k, v in res.counts().items() if v} == {"lost-commit": 1}, res.summary()


def test_commit_skip():
    h = [e for e in group_history() if not (e["t"] == "gpoll" and e["v"] == "v4")]
    res = check(h + [{"t": "committed", "p": 0, "o": 6}])
    assert {k: v for k, v in res.counts().items() if v} == {"commit-skip": 1}, res.summary()
    assert res.anomalies["commit-skip"][0]["value"] == "v4"
