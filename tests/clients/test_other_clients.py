"""kafka-python, aiokafka and kafkajs against a running broker (manual assignment only)."""
import asyncio
import json
import os
import shutil
import subprocess

import pytest

from helpers import consume_all, create_topic, produce

pytestmark = pytest.mark.timeout(120)
HERE = os.path.dirname(os.path.abspath(__file__))


def test_kafka_python_round_trip_assign_and_seek(broker, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    create_topic(broker.bootstrap, topic, 3)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip", linger_ms=5)
    try:
        futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3,
                          headers=[("i", f"{i}".encode())], timestamp_ms=1_650_000_000_000 + i)
                   for i in range(90)]
        p.flush(30)
        meta = [f.get(timeout=10) for f in futures]
    finally:
        p.close(10)
    assert [(m.partition, m.offset) for m in meta] == [(i % 3, i // 3) for i in range(90)]

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000,
                      group_id=None)
    try:
        tps = [TopicPartition(topic, i) for i in range(3)]
        c.assign(tps)
        c.seek_to_beginning()
        got = [m for _, m in zip(range(200), c)]
        assert sorted((m.partition, m.offset, m.key, m.value, tuple(m.headers), m.timestamp) for m in got) == sorted(
            (i % 3, i // 3, f"k{i}".encode(), f"v{i}".encode(), (("i", f"{i}".encode()),), 1_650_000_000_000 + i)
            for i in range(90))
        assert c.end_offsets(tps) == {tp: 30 for tp in tps}
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        # seek to an explicit offset.
        c.assign([tps[2]])
        c.seek(tps[2], 25)
        rest = [m for _, m in zip(range(20), c)]
        assert [(m.offset, m.value) for m in rest] == [(o, f"v{o * 3 + 2}".encode()) for o in range(25, 30)]
    finally:
        c.close()


def test_kafka_python_offsets_for_times(broker, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    create_topic(broker.bootstrap, topic, 1)
    base = 1_650_000_000_000
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=20)
    try:
        futures = [p.send(topic, value=f"v{i}".encode(), timestamp_ms=base + 10 * i) for i in range(40)]
        p.flush(30)
        [f.get(timeout=10) for f in futures]
    finally:
        p.close(10)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        found = c.offsets_for_times({tp: base + 255})
        assert (found[tp].offset, found[tp].timestamp) == (26, base + 260)
        assert c.offsets_for_times({tp: base + 10_000})[tp] is None
    finally:
        c.close()


def test_kafka_python_admin_create_delete_and_errors(broker, topic):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, 4, 1), NewTopic(topic + "-2", 2, 1)])
        assert {topic, topic + "-2"} <= set(admin.list_topics())
        desc = {t.get("name", t.get("topic")): t for t in admin.describe_topics([topic, topic + "-2"])}
        assert all(t["error_code"] == 0 for t in desc.values()), desc
        assert len(desc[topic]["partitions"]) == 4 and len(desc[topic + "-2"]["partitions"]) == 2
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, 1, 1)])
        admin.create_topics([NewTopic(topic + "-v", 1, 1)], validate_only=True)
        assert topic + "-v" not in admin.list_topics()
        admin.delete_topics([topic, topic + "-2"])
        remaining = set(admin.list_topics())
        assert topic not in remaining and topic + "-2" not in remaining
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
    finally:
        admin.close()


def test_kafka_python_idempotent_producer(broker, topic):
    from kafka import KafkaProducer

    create_topic(broker.bootstrap, topic, 2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True)
    try:
        futures = [p.send(topic, value=f"i{i}".encode(), partition=i % 2) for i in range(100)]
        p.flush(30)
        meta = [f.get(timeout=10) for f in futures]
    finally:
        p.close(10)
    assert sorted((m.partition, m.offset) for m in meta) == sorted((i % 2, i // 2) for i in range(100))
    got = consume_all(broker.bootstrap, topic, 2, 100)
    assert sorted(m.value() for m in got) == sorted(f"i{i}".encode() for i in range(100))


def test_aiokafka_round_trip(broker, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    create_topic(broker.bootstrap, topic, 2)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True,
                             compression_type="gzip", request_timeout_ms=15000)
        await p.start()
        sent = []
        try:
            for i in range(60):
                md = await p.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode(), partition=i % 2,
                                           headers=[("n", f"{i}".encode())])
                sent.append((md.partition, md.offset))
            batch = p.create_batch()
            for i in range(60, 80):
                batch.append(key=None, value=f"v{i}".encode(), timestamp=None)
            fut = await p.send_batch(batch, topic, partition=0)
            await fut
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", group_id=None)
        await c.start()
        got = []
        try:
            tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            for _ in range(100):
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    got += msgs
                if len(got) >= 80:
                    break
            ends = await c.end_offsets(tps)
            ends = [ends[tp] for tp in tps]
            c.seek(tps[1], 25)
            tail = []
            for _ in range(20):
                batch = await c.getmany(tps[1], timeout_ms=500)
                tail += batch.get(tps[1], [])
                if len(tail) >= 5:
                    break
        finally:
            await c.stop()
        return sent, got, ends, tail

    sent, got, ends, tail = asyncio.run(run())
    assert sent == [(i % 2, i // 2) for i in range(60)]
    assert sorted((m.partition, m.offset, m.value) for m in got) == sorted(
        [(i % 2, i // 2, f"v{i}".encode()) for i in range(60)] + [(0, 30 + i - 60, f"v{i}".encode()) for i in range(60, 80)])
    first = [m for m in got if m.value == b"v7"][0]
    assert first.key == b"k7" and list(first.headers) == [("n", b"7")]
    assert ends == [50, 30]
    assert [(m.offset, m.value) for m in tail] == [(o, f"v{o * 2 + 1}".encode()) for o in range(25, 30)]


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (scripts/test.sh installs it)")
def test_kafkajs_producer_and_admin(broker, topic):
    from kafka.partitioner.default import murmur2

    script = os.path.join(HERE, "kafkajs_produce.js")
    r = subprocess.run(["node", script, broker.bootstrap, topic, "60"], capture_output=True, timeout=90, cwd=HERE,
                       env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"})
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out["created"] is True and out["again"] is False and out["listed"] is True
    assert sorted((p["id"], p["leader"]) for p in out["partitions"]) == [(0, 0), (1, 0), (2, 0)]
    assert all(s["errorCode"] == 0 for s in out["sent"]), out["sent"]
    highs = {int(o["partition"]): int(o["high"]) for o in out["offsets"]}
    assert sum(highs.values()) == 60 and all(int(o["low"]) == 0 for o in out["offsets"])

    got = consume_all(broker.bootstrap, topic, 3, 60)
    assert len(got) == 60
    for m in got:
        i = int(m.value().decode().split("-")[1])
        assert m.key() == f"k{i}".encode()
        assert m.headers() == [("n", f"{i}".encode()), ("src", b"kafkajs")]
        assert m.timestamp()[1] == 1650000000000 + i
        # kafkajs' default partitioner is Java's murmur2.
        assert m.partition() == (murmur2(m.key()) & 0x7FFFFFFF) % 3
    # Per partition, offsets 0..high-1 in production order.
    for p, high in highs.items():
        part = [m for m in got if m.partition() == p]
        assert [m.offset() for m in part] == list(range(high))
        idx = [int(m.value().decode().split("-")[1]) for m in part]
        assert idx == sorted(idx)
    # fetchTopicOffsetsByTimestamp(ts + 30): per partition, the first message with i >= 30.
    by_ts = {int(o["partition"]): int(o["offset"]) for o in out["byTs"]}
    for p in range(3):
        part = [m for m in got if m.partition() == p]
        want = next((m.offset() for m in part if int(m.value().decode().split("-")[1]) >= 30), highs[p])
        assert by_ts[p] == want, (p, by_ts, want)
