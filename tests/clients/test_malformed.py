"""Hostile frames get Kafka's answer (an error or a closed connection) while a well-behaved
client keeps working."""
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import consume_all, create_topic

pytestmark = pytest.mark.timeout(120)


def closed_by_broker(sock):
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def raw(broker, payload):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.sendall(payload)
    return s


def header(api_key, version, corr=1, client=b"evil"):
    return struct.pack(">hhih", api_key, version, corr, len(client)) + client


CASES = {
    "negative size": struct.pack(">i", -7),
    "oversize frame": struct.pack(">i", 200 * 1024 * 1024),
    "unknown api key": struct.pack(">i", 14) + header(999, 0),
    "unsupported produce version": struct.pack(">i", 14) + header(0, 1),
    "garbage body": struct.pack(">i", 30) + header(3, 9) + b"\xff" * 16,
    "lying string length": struct.pack(">i", 10) + struct.pack(">hhih", 18, 1, 1, 500),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_frames_close_only_their_connection(broker, topic, case):
    create_topic(broker.bootstrap, topic, 1)
    stop = threading.Event()
    errors, delivered = [], []

    def good_client():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1})
        i = 0
        while not stop.is_set():
            p.produce(topic, value=f"ok{i}".encode(),
                      on_delivery=lambda e, m: (errors if e else delivered).append(e or m.offset()))
            i += 1
            p.poll(0.01)
        p.flush(20)

    t = threading.Thread(target=good_client)
    t.start()
    time.sleep(0.5)
    s = raw(broker, CASES[case])
    assert closed_by_broker(s), case
    s.close()
    time.sleep(0.5)
    stop.set()
    t.join(30)
    assert not errors and len(delivered) > 5
    assert broker.proc.poll() is None, "broker still running"
    assert len(consume_all(broker.bootstrap, topic, 1, len(delivered))) == len(delivered)


def test_unknown_api_versions_version_gets_kip511_answer(broker):
    s = raw(broker, struct.pack(">i", 14) + header(18, 77, corr=42))
    s.settimeout(5)
    size = struct.unpack(">i", s.recv(4))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    corr, err, n = struct.unpack(">ihi", body[:10])
    assert corr == 42 and err == 35 and n > 5
    keys = {struct.unpack(">h", body[10 + 6 * i:12 + 6 * i])[0] for i in range(n)}
    assert {0, 1, 3, 18} <= keys
    s.close()


def test_truncated_frames_and_many_idle_connections_do_not_disturb(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    socks = [raw(broker, struct.pack(">i", 1000) + b"\x00\x12") for _ in range(50)]
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(20):
        p.produce(topic, value=b"x")
    assert p.flush(20) == 0
    for s in socks:
        s.close()
    assert broker.proc.poll() is None
