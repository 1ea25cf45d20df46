"""Restarts, kill -9 and connection cuts lose nothing that was acknowledged."""
import os
import subprocess
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer, TopicPartition

from helpers import consume_all, consumer, create_topic, produce, wait_until

pytestmark = pytest.mark.timeout(180)


def snapshot(bootstrap, topic, partitions, expect):
    got = consume_all(bootstrap, topic, partitions, expect, timeout=40)
    return sorted((m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in got)


@pytest.mark.parametrize("cores", [1, 2])
def test_clean_restart_keeps_everything(broker_factory, topic, cores):
    b = broker_factory(cores=cores)
    create_topic(b.bootstrap, topic, 4)
    reports = produce(b.bootstrap, topic,
                      [{"key": f"{i}".encode(), "value": f"v{i}".encode() * 10, "headers": [("i", f"{i}".encode())]}
                       for i in range(800)],
                      acks="all", **{"compression.type": "lz4" if cores == 2 else "none"})
    before = snapshot(b.bootstrap, topic, 4, 800)
    assert len(before) == 800
    assert sorted((r["partition"], r["offset"], r["value"]) for r in reports) == [(p, o, v) for p, o, _, v, _, _ in before]
    b.restart()
    assert snapshot(b.bootstrap, topic, 4, 800) == before
    c = consumer(b.bootstrap)
    try:
        highs = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(4)]
    finally:
        c.close()
    assert sum(highs) == 800
    # Offsets continue after the restart, in every partition.
    later = produce(b.bootstrap, topic, [{"value": f"later{p}".encode(), "partition": p} for p in range(4)], acks="all")
    assert sorted((r["partition"], r["offset"]) for r in later) == [(p, highs[p]) for p in range(4)]
    # A second restart keeps the old and the new.
    b.restart()
    assert len(snapshot(b.bootstrap, topic, 4, 804)) == 804


def test_topics_survive_restart_including_empty_ones(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    create_topic(broker.bootstrap, topic + "-empty", 5)
    produce(broker.bootstrap, topic, [{"value": b"x", "partition": 2}], acks="all")
    broker.restart()
    from helpers import admin
    md = admin(broker.bootstrap).list_topics(timeout=10).topics
    assert len(md[topic].partitions) == 3
    assert len(md[topic + "-empty"].partitions) == 5
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 2), timeout=10) == (0, 1)
        assert c.get_watermark_offsets(TopicPartition(topic + "-empty", 4), timeout=10) == (0, 0)
    finally:
        c.close()


def stream(bootstrap, topic, acked, failed, stop, conf):
    """Produces until stopped, recording every acknowledged (partition, offset, value) and
    every failed delivery."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 60000, "retry.backoff.ms": 50, "reconnect.backoff.ms": 50,
                  "reconnect.backoff.max.ms": 500, **conf})
    lock = threading.Lock()

    def cb(err, m):
        with lock:
            if err is None:
                acked.append((m.partition(), m.offset(), m.value()))
            else:
                failed.append((err.str(), m.value()))

    i = 0
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        try:
            p.produce(topic, value=f"s{i}".encode(), on_delivery=cb)
            i += 1
        except BufferError:
            pass
        p.poll(0.001)
    p.flush(60)
    return i


def run_stream_with(broker, topic, partitions, conf, disturb):
    create_topic(broker.bootstrap, topic, partitions)
    acked, failed, stop = [], [], threading.Event()
    t = threading.Thread(target=stream, args=(broker.bootstrap, topic, acked, failed, stop, conf))
    t.start()
    try:
        # At least 2 s of stream on each side of the disturbance, longer while nothing has been
        # acknowledged yet (a loaded host can take that long to connect).
        time.sleep(2)
        wait_until(lambda: len(acked) > 0, timeout_s=30)
        before = len(acked)
        disturb()
        time.sleep(2)
        wait_until(lambda: len(acked) > before, timeout_s=30)
    finally:
        stop.set()
        t.join(90)
    assert not t.is_alive()
    assert before > 0, "nothing acknowledged before the disturbance"
    assert len(acked) > before, f"nothing acknowledged after the disturbance (failed: {failed[:3]})"
    got = consume_all(broker.bootstrap, topic, partitions, len(acked), timeout=40)
    return acked, failed, got


@pytest.mark.parametrize("acks", ["all", "1"])
def test_kill9_during_acks_all_stream_keeps_every_acknowledged_message(broker, topic, acks):
    """Plain (non-idempotent) acks=all, and acks=1 (answered only once the local write is
    durable, as README says): every acknowledged value is at its acknowledged offset.
    (Kafka allows an unacknowledged retry to be stored twice, so only acknowledged records are
    held to exactly-once.)"""
    acked, failed, got = run_stream_with(broker, topic, 3, {"enable.idempotence": False, "retries": 10,
                                                            "acks": acks},
                                         broker.crash_restart)
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    missing = [(p, o, v) for p, o, v in acked if stored.get((p, o)) != v]
    assert not missing, f"{len(missing)} acknowledged messages missing or changed, e.g. {missing[:5]}"
    # No acknowledged (partition, offset) was acknowledged twice.
    assert len({(p, o) for p, o, _ in acked}) == len(acked)
    # A value acknowledged once is stored exactly once at that offset; a second copy elsewhere
    # may only be an unacknowledged attempt, which never shares an acknowledged offset.
    acked_values = Counter(v for _, _, v in acked)
    assert all(c == 1 for c in acked_values.values()), "a value was acknowledged twice"
    # Offsets are dense in every partition (no holes after recovery).
    for part in range(3):
        offs = sorted(o for (p, o) in stored if p == part)
        assert offs == list(range(len(offs))), f"partition {part} has holes"


def test_kill9_during_idempotent_acks_all_stream_exactly_once(broker, topic):
    acked, failed, got = run_stream_with(broker, topic, 3, {"enable.idempotence": True}, broker.crash_restart)
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    for part, off, value in acked:
        assert stored.get((part, off)) == value, f"acknowledged {value} at {part}/{off} is missing"
    counts = Counter(m.value() for m in got)
    dupes = [v for v, c in counts.items() if c > 1]
    assert not dupes, f"idempotent producer's values stored twice: {dupes[:5]}"
    assert not failed, failed[:5]


def test_idempotent_producer_connection_cut_by_kill9_has_no_duplicates(broker, topic):
    def disturb():
        broker.crash_restart()
        time.sleep(1.5)
        broker.crash_restart()

    acked, failed, got = run_stream_with(broker, topic, 2, {"enable.idempotence": True}, disturb)
    values = [m.value() for m in got]
    assert len(values) == len(set(values)), "a retried batch was written twice"
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    for part, off, value in acked:
        assert stored.get((part, off)) == value
    assert not failed, failed[:5]


def test_idempotent_producer_survives_broker_stall_longer_than_request_timeout(broker, topic):
    """SIGSTOP the broker for longer than the producer's request/socket timeouts: librdkafka
    gives up on the in-flight requests and reconnects, the stalled broker later reads the old
    requests too, and the sequence numbers must keep every value exactly once."""
    conf = {"enable.idempotence": True, "request.timeout.ms": 1500, "socket.timeout.ms": 2000,
            "message.timeout.ms": 60000}

    def disturb():
        broker.pause()
        try:
            time.sleep(4)
        finally:
            broker.resume()

    acked, failed, got = run_stream_with(broker, topic, 2, conf, disturb)
    values = [m.value() for m in got]
    dupes = [v for v, c in Counter(values).items() if c > 1]
    assert not dupes, f"stored twice after the stall: {dupes[:5]}"
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    # librdkafka reports success without an offset when the broker answers a retried batch with
    # DUPLICATE_SEQUENCE_NUMBER (already written, original offset no longer cached): such a
    # value must still be stored exactly once, anywhere in its partition.
    where = {m.value(): (m.partition(), m.offset()) for m in got}
    missing = [(p, o, v) for p, o, v in acked if (stored.get((p, o)) != v if o is not None else v not in where)]
    assert not missing, missing[:5]
    assert not failed, failed[:5]
    unknown = [v for _, o, v in acked if o is None]
    print(f"{len(acked)} acknowledged, {len(unknown)} without an offset: {unknown[:10]}")


def test_sigterm_is_prompt_with_a_parked_long_poll(broker, topic):
    """A consumer parked in a long Fetch must not hold up a clean shutdown: the broker answers
    (or drops) parked fetches at SIGTERM instead of waiting out fetch.wait.max.ms."""
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, [{"value": b"x"}], acks="all")
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 30000, "socket.timeout.ms": 60000})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        m = None
        deadline = time.time() + 15
        while m is None and time.time() < deadline:
            m = c.poll(0.2)
        assert m is not None and m.value() == b"x"
        time.sleep(1)  # the next Fetch is parked at the end of the log
        t0 = time.time()
        broker.stop()
        took = time.time() - t0
    finally:
        c.close()
    assert took < 3, f"clean shutdown took {took:.1f}s with a parked fetch"
    broker.start()
    assert [m.value() for m in consume_all(broker.bootstrap, topic, 1, 1)] == [b"x"]


def read_three_ways(bootstrap, topic, count, start=0):
    """(offset, value) of partition 0's `count` messages from `start` as confluent-kafka,
    kafka-python and kcat (Debian's librdkafka 2.0.2) each read them."""
    got = [(m.offset(), m.value()) for m in consume_all(bootstrap, topic, 1, count, start=start)]
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000,
                       max_partition_fetch_bytes=4 << 20, fetch_max_bytes=8 << 20)
    try:
        tp = KTP(topic, 0)
        kc.assign([tp])
        kc.seek(tp, start)
        seen = []
        for m in kc:
            seen.append((m.offset, m.value))
            if len(seen) == count:
                break
    finally:
        kc.close()
    r = subprocess.run(["kcat", "-X", "api.version.request=true", "-C", "-b", bootstrap, "-t", topic, "-p", "0",
                        "-o", str(start), "-c", str(count), "-e", "-f", "%o %s\\n"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    lines = r.stdout.split(b"\n")[:-1]
    kcat = [(int(o), v) for o, v in (line.split(b" ", 1) for line in lines)]
    return got, seen, kcat


def watermarks(bootstrap, topic):
    """(log start, high watermark) of partition 0, as confluent-kafka reports them."""
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def settled_log_start(bootstrap, topic, quiet_s=2.0, timeout_s=30.0):
    """Partition 0's log start once retention has left it unchanged for `quiet_s` (retention is
    checked every 100 ms in the tests that call this)."""
    c = consumer(bootstrap)
    try:
        deadline = time.time() + timeout_s
        low, since = None, time.time()
        while time.time() < deadline:
            now_low = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0]
            if now_low != low:
                low, since = now_low, time.time()
            elif time.time() - since >= quiet_s:
                return low
            time.sleep(0.1)
    finally:
        c.close()
    raise AssertionError(f"retention kept moving the log start for {timeout_s} s (last {low})")


def test_retention_recycles_segment_files_and_kill9_serves_only_acknowledged(broker_factory, topic):
    """Retention hands deleted segment files to new segments (tidewater.log.recycled.segments.max),
    so the active segment's file holds stale batches past the new data. After kill -9 the
    partition holds exactly the acknowledged messages from its log start on (stale ones are
    never served, to confluent-kafka or kafka-python) and appends continue at the old end."""
    b = broker_factory(cores=1, extra=["--set", "log.retention.check.interval.ms=100",
                                       "--set", "tidewater.log.recycled.segments.max=2"])
    create_topic(b.bootstrap, topic, 1, config={"segment.bytes": "65536", "retention.bytes": "262144"})
    pdir = os.path.join(b.data, f"{topic}-0")

    def produce_values(start, n):
        # Small batches, so segments of 64 KiB roll often (a batch never spans two).
        return produce(b.bootstrap, topic, [{"value": f"{i:08d}".encode() * 75} for i in range(start, start + n)],
                       acks="all", **{"batch.size": 16384})

    acked = produce_values(0, 1800)
    deadline = time.time() + 15
    while time.time() < deadline and not any(n.endswith(".recycle") for n in os.listdir(pdir)):
        time.sleep(0.1)
    pool = [n for n in os.listdir(pdir) if n.endswith(".recycle")]
    assert 1 <= len(pool) <= 2, f"retention fills a bounded pool: {sorted(os.listdir(pdir))}"
    acked += produce_values(1800, 1800)
    assert "new segment reuses a recycled file" in b.log(tail=10_000_000), "no segment reused a file"
    # Retention must be done with this data before the crash: a pass still owed would run after
    # the restart, in the middle of the reads below, and cut them short (it did on a loaded CI).
    settled = settled_log_start(b.bootstrap, topic)
    b.crash_restart()
    restarted = time.time()
    low, high = watermarks(b.bootstrap, topic)
    assert [r["offset"] for r in acked] == list(range(len(acked)))
    assert high == len(acked), f"log end {high} after recovery, {len(acked)} acknowledged"
    assert 0 < low < high, "retention moved the log start"
    assert low == settled, f"recovery keeps the log start retention had reached ({settled}), not {low}"
    want = [(r["offset"], r["value"]) for r in acked if r["offset"] >= low]
    got, seen, kcat = read_three_ways(b.bootstrap, topic, len(want), start=low)
    assert got == want
    assert seen == want, "kafka-python reads the same acknowledged messages"
    assert kcat == want, "kcat reads the same acknowledged messages"
    # The restarted broker's own retention passes find nothing more to delete: recovery gave the
    # segments back their sizes, not their (recycled, longer) file lengths.
    time.sleep(max(0.0, restarted + 2.0 - time.time()))
    assert watermarks(b.bootstrap, topic)[0] == low, "retention after the restart moved the log start"
    after = produce_values(9_000_000, 1)
    assert after[0]["offset"] == high, "appends continue at the recovered end"


def test_large_batches_staged_without_copy_carry_their_offsets_before_and_after_kill9(broker, topic):
    """Appends of 64 KiB or more are staged as the producer sent them (every batch saying base
    offset 0) and get their offsets on the way to disk and when first read from the cache.
    Batches of ~1 MB: read back before a restart (from the cache) and after kill -9 (from disk),
    confluent-kafka, kafka-python and kcat see every acknowledged message at its offset."""
    create_topic(broker.bootstrap, topic, 1)
    values = [f"{i:08d}".encode() * 128 for i in range(3000)]  # 1 KiB each, ~3 MB in all
    acked = produce(broker.bootstrap, topic, [{"value": v, "partition": 0} for v in values],
                    acks="all", **{"batch.size": 1_000_000, "linger.ms": 200, "enable.idempotence": False})
    want = [(r["offset"], r["value"]) for r in acked]
    assert [o for o, _ in want] == list(range(len(values))), "acknowledged offsets are dense"
    assert [v for _, v in want] == values, "in production order"
    for client, got in zip(["confluent-kafka", "kafka-python", "kcat"], read_three_ways(broker.bootstrap, topic, 3000)):
        assert got == want, f"{client} reads the acknowledged messages from the cache"
    more = produce(broker.bootstrap, topic, [{"value": v, "partition": 0} for v in values[:1000]],
                   acks="all", **{"batch.size": 1_000_000, "linger.ms": 200})
    want += [(r["offset"], r["value"]) for r in more]
    broker.crash_restart()
    for client, got in zip(["confluent-kafka", "kafka-python", "kcat"], read_three_ways(broker.bootstrap, topic, 4000)):
        assert got == want, f"{client} reads the acknowledged messages from disk after kill -9"
    after = produce(broker.bootstrap, topic, [{"value": b"next", "partition": 0}], acks="all")
    assert after[0]["offset"] == 4000, "appends continue at the recovered end"
