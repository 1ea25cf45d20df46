#!/usr/bin/env python3
"""One consumer-group member for the group tests (confluent-kafka by default; kafka-python or
aiokafka with --client), run as its own process so a test can kill -9 it. Processes each batch, then commits it synchronously, and logs JSON lines
to --out: {"e": "assign"|"revoke", "parts": [...], "t": ...}, {"e": "msg", "p", "o", "v", "t"}
(processing: logged before the commit that covers it, so a kill between the two re-delivers
rather than loses), {"e": "commit_failed", "err"}. Stops and leaves
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
    ap.add_argument("--client", default="confluent", choices=["confluent", "kafka-python", "aiokafka"])
    a = ap.parse_args()
    out = open(a.out, "a", buffering=1)

    def log(**e):
        e["t"] = round(time.time(), 3)
        out.write(json.dumps(e) + "\n")

    if a.client == "kafka-python":
        return run_kafka_python(a, log)
    if a.client == "aiokafka":
        return run_aiokafka(a, log)
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
        for m in msgs:
            log(e="msg", p=m.partition(), o=m.offset(), v=m.value().decode())
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            log(e="commit_failed", err=str(e.args[0]))
    c.close()
    log(e="closed")
    return 0


def parts(tps):
    return sorted(tp.partition for tp in tps)


def run_kafka_python(a, log):
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import CommitFailedError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log(e="revoke", parts=parts(revoked))

        def on_partitions_assigned(self, assigned):
            log(e="assign", parts=parts(assigned))

    strategy = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[a.strategy]
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=a.session_ms, heartbeat_interval_ms=500,
                      partition_assignment_strategy=[strategy], fetch_max_wait_ms=100)
    c.subscribe([a.topic], listener=Listener())
    log(e="started", pid=os.getpid())
    while not os.path.exists(a.stop):
        msgs = [m for ms in c.poll(timeout_ms=200, max_records=200).values() for m in ms]
        if not msgs:
            continue
        for m in msgs:
            log(e="msg", p=m.partition, o=m.offset, v=m.value.decode())
        try:
            c.commit()
        except CommitFailedError as e:
            log(e="commit_failed", err=str(e))
    c.close()
    log(e="closed")
    return 0


def run_aiokafka(a, log):
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.errors import CommitFailedError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log(e="revoke", parts=parts(revoked))

        def on_partitions_assigned(self, assigned):
            log(e="assign", parts=parts(assigned))

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=a.session_ms,
                             heartbeat_interval_ms=500, fetch_max_wait_ms=100)
        c.subscribe([a.topic], listener=Listener())
        await c.start()
        log(e="started", pid=os.getpid())
        try:
            while not os.path.exists(a.stop):
                batch = await c.getmany(timeout_ms=200, max_records=200)
                msgs = [m for ms in batch.values() for m in ms]
                if not msgs:
                    continue
                for m in msgs:
                    log(e="msg", p=m.partition, o=m.offset, v=m.value.decode())
                try:
                    await c.commit()
                except CommitFailedError as e:
                    log(e="commit_failed", err=str(e))
        finally:
            await c.stop()
        log(e="closed")

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
