"""confluent-kafka (librdkafka 2.16, bundled in the wheel) against a running broker."""
import threading
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_CREATE_TIME, KafkaError, Producer,
                             TopicPartition)

from helpers import admin, consume_all, consumer, create_topic, poll_one, produce

pytestmark = pytest.mark.timeout(120)


def test_metadata_advertises_this_loopback_listener(broker, topic):
    create_topic(broker.bootstrap, topic, 4)
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert [(b.id, b.host, b.port) for b in md.brokers.values()] == [(0, "127.0.0.1", broker.port)]
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for p in t.partitions.values():
        assert p.error is None and p.leader == 0 and p.replicas == [0] and p.isrs == [0]


def test_keyed_messages_land_where_the_partitioner_says_and_read_back_identical(any_broker, topic):
    b = any_broker
    create_topic(b.bootstrap, topic, 6)
    base = int(time.time() * 1000) - 3_600_000
    msgs = []
    for i in range(600):
        headers = [("h", f"{i}".encode()), ("bin", bytes([i % 256, 0, 255])), ("dup", b"a"), ("dup", b"b")]
        if i % 50 == 0:
            headers.append(("null", None))
        msgs.append({"key": f"key-{i % 17}".encode(), "value": f"value-{i}".encode() * (1 + i % 7),
                     "headers": headers, "timestamp": base + i})
    # Edge cases: empty value, null value (tombstone), binary key.
    msgs.append({"key": b"empty", "value": b"", "timestamp": base + 1000})
    msgs.append({"key": b"tomb", "value": None, "timestamp": base + 1001})
    msgs.append({"key": bytes(range(256)), "value": bytes(range(255, -1, -1)), "timestamp": base + 1002})
    reports = produce(b.bootstrap, topic, msgs, acks="all")
    assert len(reports) == len(msgs)

    by_key = {}
    for r in reports:
        by_key.setdefault(r["key"], set()).add(r["partition"])
        assert r["timestamp"] == (TIMESTAMP_CREATE_TIME, [m for m in msgs if m["value"] == r["value"]
                                                          and m["key"] == r["key"]][0]["timestamp"])
    assert all(len(p) == 1 for p in by_key.values()), "one key, one partition"
    assert len({p for s in by_key.values() for p in s}) > 1, "keys spread across partitions"
    # Per partition, acknowledged offsets are 0..n-1 with no gap.
    for part in range(6):
        offs = sorted(r["offset"] for r in reports if r["partition"] == part)
        assert offs == list(range(len(offs)))

    got = consume_all(b.bootstrap, topic, 6, len(msgs))
    assert len(got) == len(msgs)
    sent = {(r["partition"], r["offset"]): r for r in reports}
    original = {(m["key"], m["value"]): m for m in msgs}
    for m in got:
        r = sent[(m.partition(), m.offset())]
        assert (m.key(), m.value()) == (r["key"], r["value"])
        o = original[(m.key(), m.value())]
        assert (m.headers() or []) == o.get("headers", []), (m.headers(), o.get("headers"))
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, o["timestamp"])
    # Per partition, the consumer sees offsets in order.
    for part in range(6):
        offs = [m.offset() for m in got if m.partition() == part]
        assert offs == sorted(offs) == list(range(len(offs)))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_level(broker, topic, acks):
    create_topic(broker.bootstrap, topic, 1)
    reports = produce(broker.bootstrap, topic, [{"value": f"m{i}".encode()} for i in range(300)], acks=acks)
    if acks != "0":
        assert [r["offset"] for r in reports] == list(range(300))
        assert [r["value"] for r in reports] == [f"m{i}".encode() for i in range(300)]
    got = consume_all(broker.bootstrap, topic, 1, 300)
    assert [m.value() for m in got] == [f"m{i}".encode() for i in range(300)]
    assert [m.offset() for m in got] == list(range(300))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, 2)
    msgs = [{"key": f"k{i}".encode(), "value": (f"payload-{i}-" * (1 + i % 40)).encode(),
             "headers": [("codec", codec.encode())], "partition": i % 2} for i in range(400)]
    reports = produce(broker.bootstrap, topic, msgs, acks="all", **{"compression.type": codec,
                                                                      "linger.ms": 20})
    got = consume_all(broker.bootstrap, topic, 2, 400)
    assert sorted((m.partition(), m.offset(), m.key(), m.value()) for m in got) == sorted(
        (r["partition"], r["offset"], r["key"], r["value"]) for r in reports)
    assert all(m.headers() == [("codec", codec.encode())] for m in got)
    for part in (0, 1):
        assert sorted(m.offset() for m in got if m.partition() == part) == list(range(200))


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_offsets_for_times_and_watermarks(broker, topic, codec):
    """ListOffsets by timestamp answers the exact record, also inside a compressed batch."""
    create_topic(broker.bootstrap, topic, 1)
    base = 1_700_000_000_000
    # Separate flushes so the log holds several batches of 10; timestamps 0s, 1s, ... 49s.
    for chunk in range(5):
        produce(broker.bootstrap, topic,
                # Compressible values, so librdkafka does not fall back to an uncompressed batch.
                [{"value": f"v{i}".encode() + b"x" * 200, "timestamp": base + i * 1000}
                 for i in range(chunk * 10, chunk * 10 + 10)],
                acks="all", **{"compression.type": codec, "linger.ms": 50})
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 50)

        def lookup(ts):
            res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            return res[0].offset

        results = {
            "exact 20s": (lookup(base + 20_000), 20),
            "between 20s and 21s": (lookup(base + 20_500), 21),
            "34.999s": (lookup(base + 34_999), 35),
            "inside the first batch (3s)": (lookup(base + 3_000), 3),
            "before the first": (lookup(base - 5_000), 0),
            "the very last": (lookup(base + 49_000), 49),
            "after the last": (lookup(base + 10_000_000), OFFSET_END),
            "-2 earliest": (lookup(-2), 0),
            "-1 latest": (lookup(-1), 50),
        }
        wrong = {k: v for k, v in results.items() if v[0] != v[1]}
        assert not wrong, f"{codec}: (got, want) {wrong}"
    finally:
        c.close()


def test_offsets_for_times_with_out_of_order_timestamps(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    base = 1_700_000_000_000
    order = [0, 5000, 1000, 6000, 2000, 7000]
    for i, t in enumerate(order):
        produce(broker.bootstrap, topic, [{"value": f"v{i}".encode(), "timestamp": base + t}], acks="all")
    c = consumer(broker.bootstrap)
    try:
        # Kafka's answer: the earliest offset whose timestamp is >= the target.
        res = c.offsets_for_times([TopicPartition(topic, 0, base + 3000)], timeout=10)
        assert res[0].offset == 1
        res = c.offsets_for_times([TopicPartition(topic, 0, base + 5500)], timeout=10)
        assert res[0].offset == 3
    finally:
        c.close()


def _first_new(c, bootstrap, topic, tries=40):
    """Keeps producing 'new-i' until the consumer reads something; returns the first message."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    try:
        for i in range(tries):
            p.produce(topic, value=f"new-{i}".encode(), partition=0)
            assert p.flush(10) == 0
            m = poll_one(c, timeout=0.5)
            if m is not None:
                return m
        return None
    finally:
        p.flush(10)


def test_auto_offset_reset_and_logical_start_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [{"value": f"old{i}".encode()} for i in range(10)], acks="all")

    # Out-of-range offset + earliest: starts at 0.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 1000)])
    m = poll_one(c)
    assert m is not None and (m.offset(), m.value()) == (0, b"old0")
    c.close()

    # Out-of-range offset + latest: only what is produced afterwards.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "latest"})
    c.assign([TopicPartition(topic, 0, 1000)])
    m = _first_new(c, broker.bootstrap, topic)
    assert m is not None and m.value().startswith(b"new-") and m.offset() >= 10
    c.close()

    # Out-of-range offset + error: the consumer reports it instead of resetting.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 1000)])
    err = None
    deadline = time.time() + 15
    while err is None and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None:
            assert m.error() is not None, f"read {m.value()} at {m.offset()} from an out-of-range offset"
            if m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
    assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    assert "out of range" in err.str().lower() or "OFFSET_OUT_OF_RANGE" in err.str(), err.str()
    c.close()

    # OFFSET_BEGINNING wins over reset=latest.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "latest"})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    m = poll_one(c)
    assert m is not None and (m.offset(), m.value()) == (0, b"old0")
    c.close()

    # OFFSET_END wins over reset=earliest.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    m = _first_new(c, broker.bootstrap, topic)
    assert m is not None and m.value().startswith(b"new-") and m.offset() >= 10
    c.close()

    # An explicit offset in range.
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, 7)])
    m = poll_one(c)
    assert m is not None and (m.offset(), m.value()) == (7, b"old7")
    c.close()


def test_reset_below_the_log_start_offset(broker, topic):
    """After DeleteRecords, an offset below the low watermark is out of range too."""
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(10)], acks="all")
    a = admin(broker.bootstrap)
    res = a.delete_records([TopicPartition(topic, 0, 5)])
    for f in res.values():
        assert f.result(10).low_watermark == 5
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (5, 10)
        c.assign([TopicPartition(topic, 0, 2)])
        m = poll_one(c)
        assert m is not None and (m.offset(), m.value()) == (5, b"v5")
    finally:
        c.close()


def test_eight_partitions_on_two_shards_from_many_connections(broker, topic):
    create_topic(broker.bootstrap, topic, 8)
    n_producers, per_partition = 12, 25
    reports, errors = [], []
    lock = threading.Lock()

    def producer_thread(pid):
        try:
            # Each producer is its own connection; SO_REUSEPORT spreads them over the shards.
            r = produce(broker.bootstrap, topic,
                        [{"key": f"p{pid}".encode(), "value": f"c{pid}-p{part}-{i}".encode(), "partition": part}
                         for i in range(per_partition) for part in range(8)],
                        acks="all")
            with lock:
                reports.extend(r)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=producer_thread, args=(i,)) for i in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    total = n_producers * per_partition * 8
    assert len(reports) == total
    for part in range(8):
        offs = sorted(r["offset"] for r in reports if r["partition"] == part)
        assert offs == list(range(n_producers * per_partition)), f"partition {part}: offsets not dense"
    expected = {part: sorted((r["offset"], r["value"]) for r in reports if r["partition"] == part) for part in range(8)}

    # Many concurrent readers: one per partition, plus readers of all partitions.
    results, read_errors = {}, []

    def reader(name, parts):
        try:
            got = consume_all(broker.bootstrap, topic, parts, sum(len(expected[p]) for p in parts), timeout=60)
            results[name] = got
        except BaseException as e:  # noqa: BLE001
            read_errors.append(repr(e))

    jobs = [(f"single-{p}", [p]) for p in range(8)] + [(f"all-{i}", list(range(8))) for i in range(4)]
    threads = [threading.Thread(target=reader, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not read_errors, read_errors
    for name, parts in jobs:
        got = results[name]
        for p in parts:
            assert sorted((m.offset(), m.value()) for m in got if m.partition() == p) == expected[p], (name, p)


def test_large_messages_and_message_too_large(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    big = bytes(range(256)) * 3500  # ~900 KB, under message.max.bytes (1 MiB)
    produce(broker.bootstrap, topic, [{"value": big}], acks="all", **{"compression.type": "none"})
    got = consume_all(broker.bootstrap, topic, 1, 1)
    assert len(got) == 1 and got[0].value() == big
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 3_000_000,
                  "compression.type": "none"})
    errs = []
    p.produce(topic, value=b"y" * 2_000_000, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs
    # The rejected batch did not reach the log.
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 1)
    finally:
        c.close()


def test_fetch_long_poll_wakes_on_produce(broker, topic):
    """A consumer waiting at the end of the log receives a new message promptly (the broker
    answers the parked Fetch when data arrives, not only at fetch.wait.max.ms)."""
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [{"value": b"first"}], acks="all")
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 5000})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert poll_one(c).value() == b"first"
        time.sleep(1)  # now parked in a long poll
        latencies = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 0})
        for i in range(5):
            t0 = time.time()
            p.produce(topic, value=f"w{i}".encode())
            p.flush(10)
            m = poll_one(c, timeout=10)
            assert m is not None and m.value() == f"w{i}".encode()
            latencies.append(time.time() - t0)
            time.sleep(0.3)
        assert sorted(latencies)[2] < 2.5, f"median wake-up {sorted(latencies)[2]:.2f}s: long poll not woken"
    finally:
        c.close()


def test_fetch_returns_a_message_larger_than_the_fetch_limits(broker, topic):
    """KIP-74: the first record batch is returned even when it exceeds max.partition.fetch.bytes
    and fetch.max.bytes, so a consumer never gets stuck."""
    create_topic(broker.bootstrap, topic, 1)
    big = bytes(range(256)) * 2000  # 512000 bytes
    produce(broker.bootstrap, topic, [{"value": b"small"}, {"value": big}, {"value": b"after"}], acks="all",
            **{"compression.type": "none", "linger.ms": 0})
    got = consume_all(broker.bootstrap, topic, 1, 3,
                      extra={"max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024, "message.max.bytes": 1000,
                             "receive.message.max.bytes": 2_000_000})
    assert [m.value() for m in got] == [b"small", big, b"after"]


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_start_in_the_middle_of_a_batch(broker, topic, codec):
    """Fetch returns whole batches; the client skips records before the asked offset. The
    broker must return the batch that contains the offset (not the next one)."""
    create_topic(broker.bootstrap, topic, 1)
    for chunk in range(5):
        produce(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(chunk * 20, chunk * 20 + 20)],
                acks="all", **{"compression.type": codec, "linger.ms": 50})
    for start in (0, 1, 19, 20, 37, 99):
        got = consume_all(broker.bootstrap, topic, 1, 100 - start, start=start)
        assert [m.offset() for m in got] == list(range(start, 100)), (codec, start)
        assert [m.value() for m in got] == [f"v{i}".encode() for i in range(start, 100)]


def test_concurrent_idempotent_producers_on_one_partition(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    results, errors = {}, []

    def run(pid):
        try:
            results[pid] = produce(broker.bootstrap, topic,
                                   [{"value": f"p{pid}-{i}".encode()} for i in range(300)],
                                   acks="all", **{"enable.idempotence": True, "linger.ms": 1})
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    offsets = sorted(r["offset"] for rs in results.values() for r in rs)
    assert offsets == list(range(1800))
    for pid, rs in results.items():
        # One producer's messages keep their order in the log.
        assert [r["value"] for r in sorted(rs, key=lambda r: r["offset"])] == [f"p{pid}-{i}".encode() for i in range(300)]
    got = consume_all(broker.bootstrap, topic, 1, 1800)
    assert len(got) == 1800 and len({m.value() for m in got}) == 1800
