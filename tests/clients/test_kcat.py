"""Debian's kcat (librdkafka 2.0.2): produce with keys and headers, consume, metadata."""
import json
import shutil
import subprocess

import pytest

from helpers import consume_all, create_topic, produce

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/test.sh installs it)")]


def kcat(*args, input=None, timeout=60):
    r = subprocess.run(["kcat", "-X", "api.version.request=true", *args], input=input,
                       capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}:\n{r.stderr.decode()}"
    return r.stdout.decode()


def test_kcat_produce_consume_with_keys_and_headers(any_broker, topic):
    b = any_broker
    lines = "".join(f"key{i}:value{i}\n" for i in range(100))
    kcat("-P", "-b", b.bootstrap, "-t", topic, "-K:", "-H", "k=v", "-H", "origin=kcat", input=lines.encode())
    out = kcat("-C", "-b", b.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", "%k %s %h %o\n")
    rows = [line.split(" ") for line in out.splitlines() if line]
    assert rows == [[f"key{i}", f"value{i}", "k=v,origin=kcat", str(i)] for i in range(100)]
    # The same data through confluent-kafka.
    got = consume_all(b.bootstrap, topic, 1, 100)
    assert [(m.key(), m.value(), m.headers()) for m in got] == [
        (f"key{i}".encode(), f"value{i}".encode(), [("k", b"v"), ("origin", b"kcat")]) for i in range(100)]


def test_kcat_metadata_lists_topics_and_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    create_topic(broker.bootstrap, topic + "-b", 5)
    out = kcat("-L", "-b", broker.bootstrap)
    assert f'topic "{topic}" with 3 partitions' in out
    assert f'topic "{topic}-b" with 5 partitions' in out
    assert f"broker 0 at 127.0.0.1:{broker.port}" in out
    md = json.loads(kcat("-L", "-J", "-b", broker.bootstrap, "-t", topic))
    assert [(x["id"], x["name"]) for x in md["brokers"]] == [(0, f"127.0.0.1:{broker.port}")]
    [t] = md["topics"]
    assert t["topic"] == topic and "error" not in t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 0 and [r["id"] for r in p["replicas"]] == [0] for p in t["partitions"])


def test_kcat_partition_and_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "1", input="".join(f"m{i}\n" for i in range(20)).encode())
    assert kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%s\n") == ""
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "1", "-o", "-5", "-e", "-f", "%o:%s\n")
    assert out.split() == [f"{i}:m{i}" for i in range(15, 20)]
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "1", "-o", "12", "-c", "3", "-f", "%o:%s\n")
    assert out.split() == ["12:m12", "13:m13", "14:m14"]


def test_kcat_offsets_by_timestamp(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    base = 1_600_000_000_000
    produce(broker.bootstrap, topic, [{"value": f"t{i}".encode(), "timestamp": base + i * 10} for i in range(30)],
            acks="all")
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", f"s@{base + 95}", "-e", "-f", "%o %T %s\n")
    rows = [line.split() for line in out.splitlines() if line]
    assert rows[0] == ["10", str(base + 100), "t10"]
    assert len(rows) == 20


def test_kcat_reads_what_confluent_kafka_wrote(broker, topic):
    from confluent_kafka import Producer

    for codec in ("lz4", "gzip", "snappy", "zstd"):
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 10})
        for i in range(20):
            p.produce(topic, key=b"k", value=f"{codec}{i}".encode())
        assert p.flush(20) == 0
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", "%s\n")
    assert out.split() == [f"{c}{i}" for c in ("lz4", "gzip", "snappy", "zstd") for i in range(20)]
