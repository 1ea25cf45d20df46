"""kafka-python, aiokafka and kafkajs against a running broker."""
import asyncio
import json
import os
import subprocess

import pytest

from conftest import consume_all, create_topic

pytestmark = pytest.mark.timeout(120)
HERE = os.path.dirname(__file__)


def test_kafka_python_round_trip_and_admin(broker, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)])
    assert topic in admin.list_topics()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip")
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3) for i in range(90)]
    p.flush()
    offsets = [f.get(timeout=10) for f in futures]
    assert sorted((m.partition, m.offset) for m in offsets) == sorted((p, o) for p in range(3) for o in range(30))
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, i) for i in range(3)])
    c.seek_to_beginning()
    got = sorted((m.key, m.value) for m in c)
    assert got == sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(90))
    c.close()
    p.close()
    admin.delete_topics([topic])
    assert topic not in admin.list_topics()
    admin.close()


def test_aiokafka_round_trip(broker, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        try:
            for i in range(50):
                await p.send_and_wait(topic, f"v{i}".encode(), key=b"k")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        got = []
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            for _ in range(50):
                batch = await c.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    got += [m.value for m in msgs]
                if len(got) >= 50:
                    break
        finally:
            await c.stop()
        return got

    assert asyncio.run(run()) == [f"v{i}".encode() for i in range(50)]


def test_kafkajs_producer_and_admin(broker, topic):
    script = os.path.join(HERE, "kafkajs_produce.js")
    r = subprocess.run(["node", script, broker.bootstrap, topic, "60"], capture_output=True, timeout=60,
                       env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"})
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    offsets = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert sum(int(o["high"]) for o in offsets) == 60
    got = consume_all(broker.bootstrap, topic, 3, 60)
    assert sorted(m.value() for m in got) == sorted(f"js-{i}".encode() for i in range(60))
