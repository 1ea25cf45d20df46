"""Client-side helpers shared by the tests (confluent-kafka based). Every loop is bounded in
count and time."""
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def wait_until(cond, timeout_s, interval_s=0.1):
    """Polls `cond` every `interval_s` until it holds or `timeout_s` passes; returns whether it
    holds (callers assert, with their own message)."""
    deadline = time.time() + timeout_s
    while not cond():
        if time.time() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None):
    a = admin(bootstrap)  # keep the client alive until the future resolves
    fut = a.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=15)[name]
    fut.result(20)


def produce(bootstrap, topic, msgs, flush_s=30, **conf):
    """msgs: iterable of dicts with produce() keyword arguments (key, value, headers, partition,
    timestamp). Returns delivery reports as dicts in delivery order; fails on any error."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    reports, errors = [], []

    def cb(err, m):
        if err:
            errors.append(err)
        else:
            reports.append({"partition": m.partition(), "offset": m.offset(), "key": m.key(),
                            "value": m.value(), "headers": m.headers(), "timestamp": m.timestamp()})

    n = 0
    for kw in msgs:
        for _ in range(1000):
            try:
                p.produce(topic, on_delivery=cb, **kw)
                break
            except BufferError:
                p.poll(0.05)
        else:
            raise AssertionError("producer queue stayed full")
        n += 1
        p.poll(0)
    left = p.flush(flush_s)
    assert left == 0, f"{left} messages not delivered within {flush_s}s"
    assert not errors, errors
    assert len(reports) == n
    return reports


def consumer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex[:8],
            "enable.auto.commit": False, "enable.auto.offset.store": False}
    conf.update(extra)
    return Consumer(conf)


def poll_one(c, timeout=15):
    """The next message (errors are ignored, except fatal ones), or None after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().fatal():
                raise AssertionError(m.error())
            continue
        return m
    return None


def consume_all(bootstrap, topic, partitions, expect, timeout=30, extra=None, start=0):
    """Reads every partition from `start` up to its high watermark (and at least `expect`
    records in all), or until the timeout. Returns the messages in the order read."""
    c = consumer(bootstrap, **(extra or {}))
    try:
        parts = range(partitions) if isinstance(partitions, int) else partitions
        high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, start) for p in parts])
        out = []
        next_offset = {p: start for p in parts}
        deadline = time.time() + timeout

        def done():
            return len(out) >= expect and all(next_offset[p] >= high[p] for p in parts)

        while not done() and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if m.error().fatal():
                    raise AssertionError(m.error())
                continue
            out.append(m)
            next_offset[m.partition()] = max(next_offset[m.partition()], m.offset() + 1)
        return out
    finally:
        c.close()


def uvarint(n):
    """Kafka's unsigned varint (flexible-version lengths), for hand-built frames."""
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
