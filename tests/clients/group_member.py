#!/usr/bin/env python3
"""One confluent-kafka consumer-group member for the group tests, run as its own process so a
test can kill -9 it. Processes each batch, then commits it synchronously, and logs JSON lines
to --out: {"e": "assign"|"revoke", "parts": [...], "t": ...}, {"e": "msg", "p", "o", "v", "t"}
(logged once the commit covering it succeeded), {"e": "commit_failed", "err"}. Stops and leaves
the group cleanly when --stop appears."""
import argparse
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--instance-id")
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--protocol", default="classic", help="group.protocol: classic or consumer (KIP-848)")
    ap.add_argument("--assignor", help="group.remote.assignor (consumer protocol): uniform or range")
    a = ap.parse_args()
    out = open(a.out, "a", buffering=1)

    def log(**e):
        e["t"] = round(time.time(), 3)
        out.write(json.dumps(e) + "\n")

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "log_level": 3,
    }
    if a.protocol == "consumer":
        # KIP-848: timeouts and the assignor live on the broker; the client may pick an assignor.
        conf["group.protocol"] = "consumer"
        if a.assignor:
            conf["group.remote.assignor"] = a.assignor
    else:
        conf.update({"session.timeout.ms": a.session_ms, "heartbeat.interval.ms": 500,
                     "partition.assignment.strategy": a.strategy})
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    c = Consumer(conf)
    c.subscribe([a.topic],
                on_assign=lambda _c, ps: log(e="assign", parts=sorted(p.partition for p in ps)),
                on_revoke=lambda _c, ps: log(e="revoke", parts=sorted(p.partition for p in ps)),
                on_lost=lambda _c, ps: log(e="lost", parts=sorted(p.partition for p in ps)))
    log(e="started", pid=os.getpid())
    while not os.path.exists(a.stop):
        msgs = [m for m in c.consume(200, 0.2) if not m.error()]
        if not msgs:
            continue
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            log(e="commit_failed", err=str(e.args[0]))
            continue
        for m in msgs:
            log(e="msg", p=m.partition(), o=m.offset(), v=m.value().decode())
    c.close()
    log(e="closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
