"""Restarts, kill -9 and connection cuts lose nothing that was acknowledged."""
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import consume_all, create_topic

pytestmark = pytest.mark.timeout(180)


def test_restart_keeps_everything(broker, topic):
    create_topic(broker.bootstrap, topic, 4)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(400):
        p.produce(topic, key=f"{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    before = sorted((m.partition(), m.offset(), m.value()) for m in consume_all(broker.bootstrap, topic, 4, 400))
    assert len(before) == 400
    broker.restart()
    after = sorted((m.partition(), m.offset(), m.value()) for m in consume_all(broker.bootstrap, topic, 4, 400))
    assert after == before
    # Offsets continue after the restart.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    got = []
    p.produce(topic, value=b"later", partition=0, on_delivery=lambda e, m: got.append(m.offset()))
    assert p.flush(30) == 0
    assert got == [sum(1 for m in before if m[0] == 0)]


def stream(bootstrap, topic, acked, stop, conf):
    """Produces until stopped, recording every acknowledged (partition, offset, value)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 60000, "retry.backoff.ms": 50, **conf})
    lock = threading.Lock()

    def cb(err, m):
        if err is None:
            with lock:
                acked.append((m.partition(), m.offset(), m.value()))

    i = 0
    while not stop.is_set():
        try:
            p.produce(topic, value=f"s{i}".encode(), on_delivery=cb)
            i += 1
        except BufferError:
            pass
        p.poll(0.001)
    p.flush(60)


def test_kill9_during_acks_all_stream_loses_nothing_acknowledged(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    acked, stop = [], threading.Event()
    # Idempotence makes retries after the crash exact; without it Kafka allows duplicates.
    t = threading.Thread(target=stream, args=(broker.bootstrap, topic, acked, stop, {"enable.idempotence": True}))
    t.start()
    time.sleep(2)
    before_kill = len(acked)
    broker.crash_restart()
    time.sleep(2)
    stop.set()
    t.join(90)
    assert before_kill > 0 and len(acked) > before_kill
    got = consume_all(broker.bootstrap, topic, 3, len(acked), timeout=30)
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    for part, off, value in acked:
        assert stored.get((part, off)) == value, f"acknowledged {value} at {part}/{off} is missing"
    # Exactly once at its offset: no acknowledged value appears at two offsets.
    values = [m.value() for m in got]
    acked_values = {v for _, _, v in acked}
    assert all(values.count(v) == 1 for v in acked_values)


def test_idempotent_producer_cut_mid_stream_has_no_duplicates(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    acked, stop = [], threading.Event()
    t = threading.Thread(target=stream, args=(broker.bootstrap, topic, acked, stop, {"enable.idempotence": True}))
    t.start()
    time.sleep(1.5)
    # Cut every connection mid-stream: the producer retries what was in flight.
    broker.crash_restart()
    time.sleep(1.5)
    broker.pause()
    time.sleep(1)
    broker.resume()
    time.sleep(1.5)
    stop.set()
    t.join(90)
    got = consume_all(broker.bootstrap, topic, 2, len(acked), timeout=30)
    values = [m.value() for m in got]
    assert len(values) == len(set(values)), "a retried batch was written twice"
    stored = {(m.partition(), m.offset()): m.value() for m in got}
    for part, off, value in acked:
        assert stored.get((part, off)) == value
