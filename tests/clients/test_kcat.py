"""Debian's kcat (librdkafka 2.0.2): produce with keys and headers, consume, metadata."""
import subprocess

import pytest

from conftest import create_topic

pytestmark = pytest.mark.timeout(90)


def kcat(*args, input=None):
    r = subprocess.run(["kcat", "-X", "api.version.request=true", *args], input=input,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_kcat_produce_consume_with_keys_and_headers(broker, topic):
    lines = "".join(f"key{i}:value{i}\n" for i in range(50))
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-H", "origin=kcat", "-H", "n=1", input=lines.encode())
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", "%k|%s|%h|%o\n")
    rows = [l.split("|") for l in out.strip().splitlines()]
    assert [(k, v) for k, v, _, _ in rows] == [(f"key{i}", f"value{i}") for i in range(50)]
    assert all(h == "origin=kcat,n=1" for _, _, h, _ in rows)
    assert [int(o) for *_, o in rows] == list(range(50))


def test_kcat_metadata_lists_topics_and_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    out = kcat("-L", "-b", broker.bootstrap, "-t", topic)
    assert f'topic "{topic}" with 3 partitions' in out
    assert "leader 0" in out


def test_kcat_reads_what_confluent_kafka_wrote(broker, topic):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4"})
    for i in range(20):
        p.produce(topic, key=b"k", value=f"v{i}".encode())
    assert p.flush(20) == 0
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", "%s\n")
    assert out.split() == [f"v{i}" for i in range(20)]
