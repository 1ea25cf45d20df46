#!/usr/bin/env python3
"""A well-behaved client: one confluent-kafka idempotent producer sending one message at a time
(produce + flush) and logging each round trip as JSON lines {"t": unix time, "ms": latency}."""
import argparse
import json
import os
import sys
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args()
    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "message.timeout.ms": 30000, "log_level": 3})
    out = open(args.out, "a", buffering=1)
    i = 0
    while not os.path.exists(args.stop):
        t = time.time()
        p.produce(args.topic, value=b"probe-%d" % i)
        left = p.flush(30)
        ms = (time.time() - t) * 1000
        out.write(json.dumps({"t": t, "ms": round(ms, 3), "ok": left == 0}) + "\n")
        i += 1
        time.sleep(args.interval)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
