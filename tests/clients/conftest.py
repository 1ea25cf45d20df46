"""Fixtures that run the real `tidewater` binary on a free loopback port."""
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

BIN = os.environ.get("TIDEWATER_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "release", "tidewater"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_ok(port):
    """Sends ApiVersions v0 and checks for a well-formed answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            body = struct.pack(">hhih", 18, 0, 1, -1)
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", s.recv(4))[0]
            return size > 4
    except OSError:
        return False


class Broker:
    def __init__(self, cores=2, config=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="tidewater-test-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.cores = cores
        self.extra = list(extra)
        self.config = None
        if config is not None:
            self.config = os.path.join(self.dir, "broker.toml")
            with open(self.config, "w") as f:
                f.write(config)
        self.log_path = os.path.join(self.dir, "broker.log")
        self.proc = None
        self.start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        args = [BIN, "serve", "--data-dir", self.data, "--listen", self.bootstrap, "--cores", str(self.cores)]
        if self.config:
            args += ["--config", self.config]
        args += self.extra
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            if api_versions_ok(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"broker did not start:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; a clean shutdown exits 0."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=30)
            assert rc == 0, f"broker exited with {rc}:\n{self.log()}"
        self.proc = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def crash_restart(self):
        self.kill9()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture
def broker(request):
    b = Broker(cores=2)
    yield b
    try:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print("---- broker log ----\n" + b.log())
        if b.proc is not None:
            b.stop()
    finally:
        b.kill9()


@pytest.fixture
def broker_factory():
    made = []

    def make(**kw):
        b = Broker(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.kill9()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:10]


def create_topic(bootstrap, name, partitions=1, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
    fut.result(15)


def consume_all(bootstrap, topic, partitions, expect, timeout=20, extra=None):
    """Reads every partition from offset 0 up to its high watermark (and at least `expect`
    records in all), or until the timeout."""
    from confluent_kafka import Consumer, TopicPartition

    conf = {"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex[:6], "enable.auto.commit": False}
    conf.update(extra or {})
    c = Consumer(conf)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    next_offset = {p: 0 for p in range(partitions)}

    def done():
        return len(out) >= expect and all(next_offset[p] >= high[p] for p in range(partitions))

    while not done() and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        out.append(m)
        next_offset[m.partition()] = max(next_offset[m.partition()], m.offset() + 1)
    c.close()
    return out
