"""Consumer-group tests. Consumer groups are not implemented yet: these are skipped unless
TIDEWATER_GROUPS=1 (see conftest.py)."""
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from helpers import consumer, create_topic, produce

pytestmark = [pytest.mark.groups, pytest.mark.timeout(120)]
HERE = os.path.dirname(os.path.abspath(__file__))


def test_confluent_subscribe_commit_and_resume(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(90)],
            acks="all")
    group = "g-" + uuid.uuid4().hex[:8]
    c = consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < 50 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) >= 50
    c.commit(asynchronous=False)
    c.close()
    c = consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.time() + 60
    while len({m.value() for m in got}) < 90 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    values = [m.value() for m in got]
    assert sorted(set(values)) == sorted(f"v{i}".encode() for i in range(90))
    assert len(values) == 90, "committed offsets not honoured: messages read twice"


def test_kafka_python_group_consumer(broker, topic):
    from kafka import KafkaConsumer

    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(40)], acks="all")
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="g-" + uuid.uuid4().hex[:8],
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        got = [m.value for _, m in zip(range(40), c)]
    finally:
        c.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(40))


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_kafkajs_consumer(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(30)],
            acks="all")
    r = subprocess.run(["node", os.path.join(HERE, "kafkajs_consume.js"), broker.bootstrap, topic, "30"],
                       capture_output=True, timeout=90, cwd=HERE)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    got = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert sorted(m["value"] for m in got) == sorted(f"v{i}" for i in range(30))
