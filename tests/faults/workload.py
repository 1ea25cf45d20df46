#!/usr/bin/env python3
"""Workload workers for the fault campaign; each writes its own JSONL history (see checker.py).

  workload.py producer --id 0 --bootstrap B --topic T --out F --stop STOPFILE [--rate R]
  workload.py consumer --id 0 --bootstrap B --topic T --partitions N --out F --stop STOPFILE
  workload.py final    --bootstrap B --topic T --partitions N --out F [--timeout S]
  workload.py group    --id 0 --group G --bootstrap B --topic T --out F --stop STOPFILE
  workload.py committed --group G --bootstrap B --topic T --partitions N --out F

Producers: confluent-kafka, enable.idempotence, acks=all, keyed, values p{id}-{seq}; every send
ends as ack (partition, offset), fail (error name) or unknown (no outcome by the end). A fatal
producer error (e.g. OUT_OF_ORDER_SEQUENCE after the broker lost state) starts a new producer.
Consumers: manual assignment of every partition from offset 0; every record polled is logged.
Group members: subscribe with one group id, log every record (`gpoll`), commit synchronously
after each batch and log each acknowledged commit; `committed` logs the group's offsets at the end.
"""
import argparse
import json
import os
import random
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


class History:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1 << 16)
        self.last_flush = time.time()

    def write(self, **e):
        self.f.write(json.dumps(e, separators=(",", ":")) + "\n")
        now = time.time()
        if now - self.last_flush > 0.5:
            self.f.flush()
            self.last_flush = now

    def close(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def client_timeouts(args):
    return {
        "socket.timeout.ms": args.socket_timeout_ms,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "retry.backoff.ms": 50,
        "topic.metadata.refresh.interval.ms": 2000,
        "log_level": 3,
    }


def run_producer(args):
    h = History(args.out)
    w = f"p{args.id}"
    rng = random.Random(args.id)
    pending = set()
    fatal = []

    def on_delivery(err, msg):
        v = msg.value().decode()
        pending.discard(v)
        if err is None:
            h.write(t="ack", w=w, v=v, p=msg.partition(), o=msg.offset())
        else:
            h.write(t="fail", w=w, v=v, err=err.name())
            if err.fatal():
                fatal.append(err.name())

    def make():
        conf = {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": args.message_timeout_ms,
            "request.timeout.ms": min(args.message_timeout_ms, 5000),
            "error_cb": lambda e: fatal.append(e.name()) if e.fatal() else None,
        }
        conf.update(client_timeouts(args))
        return Producer(conf)

    p = make()
    seq = 0
    t0 = time.time()
    last_check = 0.0
    stopping = False
    while True:
        now = time.time()
        if now - last_check > 0.1:
            last_check = now
            stopping = os.path.exists(args.stop) or (args.duration and now - t0 > args.duration)
        if stopping:
            break
        target = int((now - t0) * args.rate)
        while seq < target and not fatal:
            v = f"{w}-{seq}"
            try:
                p.produce(args.topic, key=f"k{rng.randrange(64)}".encode(), value=v.encode(), on_delivery=on_delivery)
            except BufferError:
                p.poll(0.05)
                continue
            pending.add(v)
            seq += 1
        p.poll(0.005)
        if fatal:
            # the idempotent producer cannot go on: fail what it holds and start a new one
            h.write(t="producer_restart", w=w, why=fatal[0])
            p.purge()
            p.flush(5)
            for v in sorted(pending):
                h.write(t="unknown", w=w, v=v)
            pending.clear()
            fatal.clear()
            p = make()
    left = p.flush(args.flush_timeout)
    for v in sorted(pending):
        h.write(t="unknown", w=w, v=v)
    h.write(t="producer_done", w=w, sent=seq, queued_left=left)
    h.close()


def consumer_conf(args, group):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "enable.partition.eof": False,
    }
    conf.update(client_timeouts(args))
    return conf


def run_consumer(args):
    h = History(args.out)
    w = f"c{args.id}"
    session = 1
    c = Consumer(consumer_conf(args, f"faults-{w}-{os.getpid()}"))
    c.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    for p in range(args.partitions):
        h.write(t="assign", w=w, s=session, p=p, o=0)
    last_check = 0.0
    while True:
        now = time.time()
        if now - last_check > 0.2:
            last_check = now
            if os.path.exists(args.stop):
                break
        for m in c.consume(500, 0.2):
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    h.write(t="consumer_error", w=w, s=session, err=m.error().name())
                continue
            h.write(t="poll", w=w, s=session, p=m.partition(), o=m.offset(), v=m.value().decode())
    c.close()
    h.close()


def run_group(args):
    """A consumer-group member: at-least-once processing with a synchronous commit per batch."""
    h = History(args.out)
    w = f"g{args.id}"
    conf = consumer_conf(args, args.group)
    conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 60000})
    c = Consumer(conf)
    c.subscribe([args.topic])
    last_check = 0.0

    def commit():
        try:
            parts = c.commit(asynchronous=False)
        except KafkaException as e:
            h.write(t="commit_failed", w=w, err=e.args[0].name() if e.args else str(e))
            return
        for tp in parts or []:
            if tp.error is None and tp.offset >= 0:
                h.write(t="commit", w=w, p=tp.partition, o=tp.offset)

    while True:
        now = time.time()
        if now - last_check > 0.2:
            last_check = now
            if os.path.exists(args.stop):
                break
        got = 0
        for m in c.consume(500, 0.2):
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    h.write(t="consumer_error", w=w, err=m.error().name())
                continue
            got += 1
            h.write(t="gpoll", w=w, p=m.partition(), o=m.offset(), v=m.value().decode())
        if got:
            commit()
    commit()
    c.close()
    h.close()


def group_committed(args):
    """{partition: committed offset} of the group (OffsetFetch; does not join the group)."""
    c = Consumer(consumer_conf(args, args.group))
    try:
        tps = c.committed([TopicPartition(args.topic, p) for p in range(args.partitions)], timeout=15)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps if tp.error is None}


def run_committed(args):
    h = History(args.out)
    got = group_committed(args)
    for p, o in sorted(got.items()):
        h.write(t="committed", p=p, o=max(o, -1))
    h.close()
    print(json.dumps({"committed": got}))


def run_final(args):
    """A fresh consumer reads every partition from 0 up to its high watermark."""
    h = History(args.out)
    w = "final"
    c = Consumer(consumer_conf(args, f"faults-final-{os.getpid()}"))
    h.write(t="final", w=w, s=0)
    high = {}
    for p in range(args.partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=15)
        high[p] = hi
        h.write(t="hw", p=p, o=hi, low=lo)
    c.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    for p in range(args.partitions):
        h.write(t="assign", w=w, s=0, p=p, o=0)
    nxt = {p: 0 for p in range(args.partitions)}
    n = 0
    deadline = time.time() + args.timeout
    while any(nxt[p] < high[p] for p in high) and time.time() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                continue
            n += 1
            h.write(t="poll", w=w, s=0, p=m.partition(), o=m.offset(), v=m.value().decode())
            nxt[m.partition()] = max(nxt[m.partition()], m.offset() + 1)
    complete = all(nxt[p] >= high[p] for p in high)
    h.write(t="final_done", w=w, read=n, complete=complete)
    c.close()
    h.close()
    print(json.dumps({"read": n, "complete": complete, "high": high}))
    return 0 if complete else 2


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["producer", "consumer", "final", "group", "committed"])
    ap.add_argument("--group", default="faults-group")
    ap.add_argument("--id", type=int, default=0)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", default="/nonexistent")
    ap.add_argument("--rate", type=float, default=200.0, help="messages per second (producer)")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: stop file only)")
    ap.add_argument("--message-timeout-ms", type=int, default=10000)
    ap.add_argument("--socket-timeout-ms", type=int, default=3000)
    ap.add_argument("--flush-timeout", type=float, default=30)
    ap.add_argument("--timeout", type=float, default=60, help="final read deadline")
    args = ap.parse_args(argv)
    roles = {"producer": run_producer, "consumer": run_consumer, "final": run_final,
             "group": run_group, "committed": run_committed}
    return roles[args.role](args) or 0


if __name__ == "__main__":
    sys.exit(main())
