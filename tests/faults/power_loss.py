#!/usr/bin/env python3
"""Simulated power loss on real segment files.

Produce acknowledged messages into a topic with small segments, stop the broker (kill -9, or
SIGTERM for the clean-stop variants), damage the files of `<data>/<topic>-0/` with a seeded
pattern, restart, read everything back, and compare with what was acknowledged:
  - the broker starts and answers;
  - every batch wholly before the damage is served, at the same offsets, with the same values;
  - nothing served differs from what was acknowledged at that offset (no invented or corrupt data);
  - the broker logs what it cut ("recovery truncated ...") when it cut something.

  power_loss.py [--pattern NAME|all] [--seed N]
"""
import argparse
import json
import os
import random
import struct
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from broker import Broker, create_topic  # noqa: E402

PAGE = 4096


def parse_segment(path):
    """[(base_offset, last_offset, pos, end)] of the well-formed batches at the start of a .log."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + 61 <= len(data):
        base, length = struct.unpack(">qi", data[pos:pos + 12])
        if length < 49 or data[pos + 16] != 2 or pos + 12 + length > len(data):
            break
        last_delta = struct.unpack(">i", data[pos + 23:pos + 27])[0]
        out.append((base, base + last_delta, pos, pos + 12 + length))
        pos += 12 + length
    return out


def segments(pdir):
    bases = sorted(int(f[:-4]) for f in os.listdir(pdir) if f.endswith(".log"))
    return [(b, os.path.join(pdir, f"{b:020d}")) for b in bases]


def produce(bootstrap, topic, n):
    from confluent_kafka import Producer

    acked = {}
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "batch.num.messages": 8, "log_level": 3})

    def cb(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value().decode()

    for i in range(n):
        p.produce(topic, value=f"m{i:05d}-" .encode() + b"x" * (i % 50), on_delivery=cb)
        if i % 8 == 7:
            p.poll(0)
            p.flush(10)
    p.flush(30)
    return acked


def read_all(bootstrap, topic, timeout=20):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "pl-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 3})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    got = {}
    nxt = 0
    deadline = time.time() + timeout
    while nxt < hi and time.time() < deadline:
        for m in c.consume(500, 0.5):
            if m.error():
                continue
            got[m.offset()] = m.value().decode(errors="replace")
            nxt = max(nxt, m.offset() + 1)
    c.close()
    return got, hi, nxt >= hi


def flip(path, pos, rng):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))


def damage(pattern, pdir, rng):
    """Applies `pattern`; returns (first offset that may be lost, or None if nothing may be lost,
    whether the broker is expected to log a cut)."""
    segs = segments(pdir)
    last_base, last_stem = segs[-1]
    log = last_stem + ".log"
    batches = parse_segment(log)
    assert batches, f"no batches in {log}"
    if pattern == "truncate-mid-last-batch":
        b = batches[-1]
        cut = rng.randrange(b[2] + 1, b[3])
        os.truncate(log, cut)
        return b[0], True
    if pattern == "flip-in-active-segment":
        b = batches[len(batches) // 2]
        flip(log, rng.randrange(b[2] + 21, b[3]), rng)  # a byte the CRC covers
        return b[0], True
    if pattern == "zero-last-page":
        end = batches[-1][3]
        page = ((end - 1) // PAGE) * PAGE
        with open(log, "r+b") as f:
            f.seek(page)
            f.write(b"\x00" * (end - page))
        first = next(b for b in batches if b[3] > page)
        return first[0], True
    if pattern == "garbage-after-end":
        end = batches[-1][3]
        with open(log, "r+b") as f:
            f.seek(end)
            f.write(bytes(rng.getrandbits(8) for _ in range(777)))
        return None, True
    if pattern == "torn-closed-indexes":
        closed = [s for s in segs[:-1] if os.path.exists(s[1] + ".index")]
        assert closed, "no closed segment with an index"
        stem = closed[len(closed) // 2][1]
        size = os.path.getsize(stem + ".index")
        os.truncate(stem + ".index", max(0, size - 3))
        ts = stem + ".timeindex"
        if os.path.getsize(ts) > 0:
            flip(ts, os.path.getsize(ts) - 1, rng)
        return None, False
    if pattern == "missing-closed-index":
        closed = [s for s in segs[:-1] if os.path.exists(s[1] + ".index")]
        assert closed, "no closed segment with an index"
        os.remove(closed[0][1] + ".index")
        return None, False
    raise ValueError(pattern)


UNCLEAN = ["truncate-mid-last-batch", "flip-in-active-segment", "zero-last-page", "garbage-after-end",
           "torn-closed-indexes", "missing-closed-index"]


def trial(pattern, seed=1, n=600, stop="kill9", workdir=None):
    rng = random.Random(f"{pattern}-{seed}")
    broker = Broker(cores=1, workdir=workdir)
    broker.start()
    topic = "pl-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1, config={"segment.bytes": "16384"})
    acked = produce(broker.bootstrap, topic, n)
    if stop == "kill9":
        broker.kill9()
    else:
        assert broker.stop() == 0
    pdir = os.path.join(broker.data, f"{topic}-0")
    files_before = sorted(os.listdir(pdir))
    log_len = len(broker.log())
    first_lost, expect_cut = damage(pattern, pdir, rng)
    started = True
    try:
        broker.start()
    except RuntimeError as e:
        started = False
        err = str(e)
    result = {"pattern": pattern, "stop": stop, "seed": seed, "acked": len(acked), "segments": len(
        [f for f in files_before if f.endswith(".log")]), "started": started}
    if not started:
        result["error"] = err[-1500:]
        return result
    got, hi, complete = read_all(broker.bootstrap, topic)
    new_log = broker.log()[log_len:]
    cut_lines = [ln for ln in new_log.splitlines() if "truncat" in ln or "recover" in ln.lower()]
    keep = [o for o in sorted(acked) if first_lost is None or o < first_lost]
    missing = [o for o in keep if got.get(o) != acked[o]]
    wrong = [o for o, v in got.items() if o in acked and acked[o] != v]
    invented = [o for o in got if o not in acked]
    broker.stop()
    result.update({
        "first_offset_allowed_lost": first_lost, "high_watermark": hi, "read": len(got), "read_complete": complete,
        "missing_before_damage": missing[:10], "missing_count": len(missing), "wrong_values": wrong[:10],
        "invented_offsets": invented[:10], "logged_cut": bool(cut_lines), "cut_log": [ln[-300:] for ln in cut_lines[:3]],
        "expect_cut_logged": expect_cut,
    })
    result["ok"] = (started and not missing and not wrong and not invented and complete
                    and (result["logged_cut"] or not expect_cut))
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pattern", default="all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stop", default="kill9", choices=["kill9", "sigterm"])
    args = ap.parse_args()
    pats = UNCLEAN if args.pattern == "all" else [args.pattern]
    bad = 0
    for p in pats:
        r = trial(p, args.seed, stop=args.stop)
        print(json.dumps(r))
        bad += not r.get("ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
