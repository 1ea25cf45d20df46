"""confluent-kafka (librdkafka 2.16) against a running broker."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING, OFFSET_END

from conftest import consume_all, create_topic

pytestmark = pytest.mark.timeout(120)


def produce(bootstrap, topic, msgs, **conf):
    """msgs: list of (key, value, headers). Returns delivery reports (partition, offset, key, value)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    reports, errors = [], []

    def cb(err, m):
        if err:
            errors.append(err)
        else:
            reports.append((m.partition(), m.offset(), m.key(), m.value()))

    for k, v, h in msgs:
        p.produce(topic, key=k, value=v, headers=h, on_delivery=cb)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors
    return reports


def test_keyed_messages_land_where_the_partitioner_says_and_read_back_identical(broker, topic):
    create_topic(broker.bootstrap, topic, 6)
    msgs = [(f"key-{i % 17}".encode(), f"value-{i}".encode(), [("h", f"{i}".encode())]) for i in range(600)]
    reports = produce(broker.bootstrap, topic, msgs, acks="all")
    assert len(reports) == 600
    # One key, one partition.
    by_key = {}
    for part, _, k, _ in reports:
        by_key.setdefault(k, set()).add(part)
    assert all(len(p) == 1 for p in by_key.values())
    assert len({p for s in by_key.values() for p in s}) > 1, "keys spread across partitions"
    got = consume_all(broker.bootstrap, topic, 6, 600)
    assert len(got) == 600
    sent = {(p, o): (k, v) for p, o, k, v in reports}
    for m in got:
        assert sent[(m.partition(), m.offset())] == (m.key(), m.value())
        assert m.headers() == [("h", m.value().split(b"-")[1])]
        assert m.timestamp()[1] > 0


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_level(broker, topic, acks):
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [(None, f"m{i}".encode(), None) for i in range(200)], acks=acks)
    got = consume_all(broker.bootstrap, topic, 1, 200)
    assert sorted(m.value() for m in got) == sorted(f"m{i}".encode() for i in range(200))
    assert [m.offset() for m in got] == list(range(200))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, 2)
    msgs = [(f"k{i}".encode(), (f"payload-{i}-" * 20).encode(), None) for i in range(300)]
    produce(broker.bootstrap, topic, msgs, acks="all", **{"compression.type": codec})
    got = consume_all(broker.bootstrap, topic, 2, 300)
    assert sorted((m.key(), m.value()) for m in got) == sorted((k, v) for k, v, _ in msgs)


def test_offsets_for_times_and_watermarks(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    base = 1_700_000_000_000
    for i in range(50):
        p.produce(topic, value=f"v{i}".encode(), timestamp=base + i * 1000)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts", "enable.auto.commit": False})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 50)
    found = c.offsets_for_times([TopicPartition(topic, 0, base + 20_500)], timeout=10)
    assert found[0].offset == 21
    past_end = c.offsets_for_times([TopicPartition(topic, 0, base + 10_000_000)], timeout=10)
    assert past_end[0].offset == -1
    c.close()


def test_auto_offset_reset_earliest_and_latest(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [(None, f"old{i}".encode(), None) for i in range(10)], acks="all")
    for reset, start in (("earliest", OFFSET_BEGINNING), ("latest", OFFSET_END)):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "r-" + reset, "enable.auto.commit": False,
                      "auto.offset.reset": reset})
        # An out-of-range offset triggers the reset policy.
        c.assign([TopicPartition(topic, 0, 1000)])
        if reset == "latest":
            time.sleep(1)
            produce(broker.bootstrap, topic, [(None, b"new", None)], acks="all")
        first = None
        deadline = time.time() + 15
        while first is None and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                first = m
        assert first is not None, reset
        if reset == "earliest":
            assert first.offset() == 0 and first.value() == b"old0"
        else:
            assert first.value() == b"new"
        c.close()
    # Explicit start positions.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    m = None
    deadline = time.time() + 15
    while m is None and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error():
            m = None
    assert m is not None and m.offset() == 0
    c.close()


def test_eight_partitions_on_two_shards_from_many_connections(broker, topic):
    create_topic(broker.bootstrap, topic, 8)
    reports = []
    for conn in range(6):
        # Separate producers are separate connections, spread over shards by SO_REUSEPORT.
        reports += produce(broker.bootstrap, topic,
                           [(None, f"c{conn}-p{p}-{i}".encode(), None) for p in range(8) for i in range(5)],
                           acks="all", partitioner="random")
    assert {p for p, *_ in reports} == set(range(8))
    for _ in range(3):
        got = consume_all(broker.bootstrap, topic, 8, len(reports))
        assert sorted((m.partition(), m.offset(), m.value()) for m in got) == sorted(
            (p, o, v) for p, o, _, v in reports)


def test_large_messages_and_message_too_large(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    big = b"x" * 900_000
    produce(broker.bootstrap, topic, [(None, big, None)], acks="all")
    got = consume_all(broker.bootstrap, topic, 1, 1)
    assert got[0].value() == big
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 3_000_000})
    errs = []
    p.produce(topic, value=b"y" * 2_000_000, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs and errs[0] is not None and "TOO_LARGE" in errs[0].name()
