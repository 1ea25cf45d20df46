"""Hostile frames on raw sockets get Kafka's answer (an error response or a closed connection)
while well-behaved confluent-kafka clients on other connections keep working."""
import contextlib
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer, TopicPartition

from conftest import recv_exact
from helpers import consume_all, consumer, create_topic, uvarint

pytestmark = pytest.mark.timeout(120)


def closed_by_broker(sock, timeout=10):
    """True when the broker closes the connection (EOF or reset) without answering."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
        return data == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def raw(broker, payload=b""):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    if payload:
        s.sendall(payload)
    return s


def header(api_key, version, corr=1, client=b"evil"):
    return struct.pack(">hhih", api_key, version, corr, len(client)) + client


def frame(body):
    return struct.pack(">i", len(body)) + body


def read_response(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def parse_api_versions_v0(body):
    corr, err, n = struct.unpack(">ihi", body[:10])
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", body[10 + 6 * i:16 + 6 * i])
        apis[k] = (lo, hi)
    return corr, err, apis, body[10 + 6 * n:]


@contextlib.contextmanager
def good_clients(broker, topic):
    """A producer and an assigned consumer working during the block; afterwards asserts that
    every message was delivered without error and read back in order."""
    stop = threading.Event()
    state = {"errors": [], "delivered": [], "read": [], "reader_errors": []}

    def produce_loop():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1})
        i = 0
        deadline = time.time() + 60
        while not stop.is_set() and time.time() < deadline:
            p.produce(topic, value=f"ok{i}".encode(), partition=0,
                      on_delivery=lambda e, m: (state["errors"].append(e) if e else state["delivered"].append(m.offset())))
            i += 1
            p.poll(0.01)
        assert p.flush(30) == 0

    def consume_loop():
        c = consumer(broker.bootstrap)
        try:
            c.assign([TopicPartition(topic, 0, 0)])
            deadline = time.time() + 60
            while time.time() < deadline and not (stop.is_set() and len(state["read"]) >= len(state["delivered"])
                                                  and state["delivered"] and not p_thread.is_alive()):
                m = c.poll(0.1)
                if m is None:
                    continue
                if m.error():
                    if not m.error().code() == -191:  # _PARTITION_EOF
                        state["reader_errors"].append(m.error())
                    continue
                state["read"].append((m.offset(), m.value()))
        finally:
            c.close()

    p_thread = threading.Thread(target=produce_loop)
    c_thread = threading.Thread(target=consume_loop)
    p_thread.start()
    c_thread.start()
    time.sleep(0.7)
    try:
        yield state
    finally:
        time.sleep(0.7)
        stop.set()
        p_thread.join(60)
        c_thread.join(70)
    assert broker.running(), "broker died"
    assert not state["errors"], state["errors"][:3]
    assert len(state["delivered"]) > 20, "good producer made no progress"
    assert sorted(state["delivered"]) == list(range(len(state["delivered"])))
    assert [o for o, _ in state["read"]] == list(range(len(state["delivered"]))), "good consumer missed records"
    assert [v for _, v in state["read"]] == [f"ok{i}".encode() for i in range(len(state["read"]))]


CASES = {
    "negative size": struct.pack(">i", -7),
    "min int size": struct.pack(">i", -2 ** 31),
    "oversize frame 200 MiB": struct.pack(">i", 200 * 1024 * 1024),
    "just over socket.request.max.bytes": struct.pack(">i", 104857600 + 1) + b"\x00" * 64,
    "zero size": struct.pack(">i", 0),
    "size smaller than a header": frame(b"\x00\x12"),
    "unknown api key": frame(header(999, 0)),
    "negative api key": frame(header(-5, 0)),
    "unsupported produce version": frame(header(0, 99)),
    "garbage metadata body": frame(header(3, 9) + b"\xff" * 16),
    "garbage produce body": frame(header(0, 9) + b"\xff\xfe" * 40),
    "lying client id length": struct.pack(">i", 10) + struct.pack(">hhih", 18, 1, 1, 500),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_frame_closes_only_its_connection(broker, topic, case):
    create_topic(broker.bootstrap, topic, 1)
    with good_clients(broker, topic):
        s = raw(broker, CASES[case])
        try:
            assert closed_by_broker(s), f"{case}: connection still open (or answered) after 10 s"
        finally:
            s.close()
        # The broker still answers a fresh connection.
        s = raw(broker, frame(header(18, 0, corr=5)))
        try:
            corr, err, apis, _ = parse_api_versions_v0(read_response(s))
            assert (corr, err) == (5, 0) and 18 in apis
        finally:
            s.close()


def test_api_versions_v99_gets_kip511_v0_answer_and_connection_stays_usable(broker):
    s = raw(broker, frame(header(18, 99, corr=42)))
    try:
        s.settimeout(10)
        corr, err, apis, rest = parse_api_versions_v0(read_response(s))
        assert corr == 42
        assert err == 35, f"expected UNSUPPORTED_VERSION (35), got {err}"
        for key in (0, 1, 2, 3, 18, 19, 20, 22):
            assert key in apis, f"api {key} missing from the version list"
        lo, hi = apis[18]
        assert lo == 0 and hi >= 3, apis[18]
        assert all(lo <= hi for lo, hi in apis.values())
        # KIP-511: the client retries on the same connection with a version it knows.
        s.sendall(frame(header(18, 0, corr=43)))
        corr, err, apis2, _ = parse_api_versions_v0(read_response(s))
        assert (corr, err) == (43, 0) and apis2 == apis
    finally:
        s.close()


def test_api_versions_v3_flexible_request(broker):
    """v3 request (header v2, compact strings, tagged fields); the response header stays v0."""
    name, ver = b"tidewater-tests", b"1.0"
    body = (struct.pack(">hhi", 18, 3, 77) + struct.pack(">h", 4) + b"test" + b"\x00"  # header v2
            + uvarint(len(name) + 1) + name + uvarint(len(ver) + 1) + ver + b"\x00")
    s = raw(broker, frame(body))
    try:
        resp = read_response(s)
        corr, err = struct.unpack(">ih", resp[:6])
        assert (corr, err) == (77, 0)
        n = resp[6] - 1  # compact array length (< 127 entries)
        assert n > 5
        keys = set()
        pos = 7
        for _ in range(n):
            k, lo, hi = struct.unpack(">hhh", resp[pos:pos + 6])
            assert resp[pos + 6] == 0, "entry tagged fields"
            keys.add(k)
            pos += 7
        assert {0, 1, 3, 18} <= keys
        assert len(resp) >= pos + 4 + 1  # throttle_time_ms + tagged fields
    finally:
        s.close()


def test_pipelined_requests_are_answered_in_order(broker):
    s = raw(broker)
    try:
        s.sendall(b"".join(frame(header(18, 0, corr=1000 + i)) for i in range(100)))
        s.settimeout(10)
        corrs = [parse_api_versions_v0(read_response(s))[0] for _ in range(100)]
        assert corrs == [1000 + i for i in range(100)]
    finally:
        s.close()


def test_request_dribbled_byte_by_byte_is_reassembled(broker):
    s = raw(broker)
    try:
        for byte in frame(header(18, 0, corr=9)) * 2:
            s.sendall(bytes([byte]))
            time.sleep(0.002)
        s.settimeout(10)
        assert parse_api_versions_v0(read_response(s))[:2] == (9, 0)
        assert parse_api_versions_v0(read_response(s))[:2] == (9, 0)
    finally:
        s.close()


def test_truncated_frames_then_close_while_clients_work(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    with good_clients(broker, topic):
        socks = []
        for i in range(60):
            kind = i % 4
            if kind == 0:
                payload = b"\x00\x00"  # half a size prefix
            elif kind == 1:
                payload = struct.pack(">i", 1000) + b"\x00\x12"  # size, then part of the body
            elif kind == 2:
                payload = frame(header(0, 9) + b"\x00" * 50)[:30]  # produce cut short
            else:
                payload = struct.pack(">i", 50 * 1024 * 1024) + b"\x00" * 4096  # promises a lot
            socks.append(raw(broker, payload))
        time.sleep(0.5)
        for s in socks:
            s.close()
        # Abortive closes (RST) too.
        for _ in range(20):
            s = raw(broker, struct.pack(">i", 500) + b"\x00\x03\x00\x09")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(0.5)
    # Still serving afterwards.
    got = consume_all(broker.bootstrap, topic, 1, 1)
    assert got
