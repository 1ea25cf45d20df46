"""Fixtures that run the real `tidewater` binary on a free loopback port.

The binary is $TIDEWATER_BIN, or target/release/tidewater of this checkout. When it is missing
the run fails loudly, unless TIDEWATER_ALLOW_MISSING_BROKER=1, which skips every test that needs a
broker with a clear reason.

Every broker gets a fresh temporary data directory; its stdout/stderr go to a log file that is
attached to the report of any test that fails (and kept on disk with the data directory).
"""
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("TIDEWATER_BIN") or os.path.join(REPO, "target", "release", "tidewater"))
ALLOW_MISSING = os.environ.get("TIDEWATER_ALLOW_MISSING_BROKER") == "1"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Brokers started during the current test (for the failure report and teardown).
_brokers = []


def binary_present():
    return os.path.isfile(BIN) and os.access(BIN, os.X_OK)


# ---------------------------------------------------------------------------------------------
# Loopback only: any Python-level connect to another address fails the test at once.


def _is_loopback(address):
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise AssertionError(f"test tried to connect to non-loopback address {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_loopback(address):
        raise AssertionError(f"test tried to connect to non-loopback address {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


# ---------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def api_versions_ok(port):
    """Sends ApiVersions v0 and checks for a well-formed, error-free answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            body = struct.pack(">hhih", 18, 0, 7, -1)
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", recv_exact(s, 4))[0]
            if size < 10:
                return False
            resp = recv_exact(s, size)
            corr, err, n = struct.unpack(">ihi", resp[:10])
            return corr == 7 and err == 0 and n > 0
    except (OSError, ConnectionError, struct.error):
        return False


class Broker:
    """One `tidewater serve` process; restart() keeps its data directory and port."""

    def __init__(self, cores=2, config=None, env=None, extra=(), name="broker"):
        self.dir = tempfile.mkdtemp(prefix="tidewater-test-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.cores = cores
        self.extra = list(extra)
        self.env = dict(env or {})
        self.name = name
        self.config = None
        if config is not None:
            self.config = os.path.join(self.dir, "broker.toml")
            with open(self.config, "w") as f:
                f.write(config)
        self.log_path = os.path.join(self.dir, "broker.log")
        self.proc = None
        self.exit_codes = []
        _brokers.append(self)
        self.start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        assert self.proc is None, "already running"
        args = [BIN, "serve", "--data-dir", self.data, "--listen", self.bootstrap, "--cores", str(self.cores)]
        if self.config:
            args += ["--config", self.config]
        args += self.extra
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start: {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **self.env})
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"broker exited with {rc} while starting:\n{self.log()}")
            if api_versions_ok(self.port):
                return
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(f"broker did not answer ApiVersions within {START_TIMEOUT_S}s:\n{self.log()}")

    def log(self, tail=40000):
        try:
            with open(self.log_path, "rb") as f:
                return _ANSI.sub("", f.read().decode(errors="replace"))[-tail:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; a clean shutdown must exit 0 within STOP_TIMEOUT_S."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"broker ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log()}")
        else:
            rc = proc.returncode
            raise AssertionError(f"broker had already exited with {rc} before SIGTERM:\n{self.log()}")
        self.exit_codes.append(rc)
        assert rc == 0, f"broker exited with {rc} after SIGTERM (expected 0):\n{self.log()}"

    def kill9(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)

    def restart(self):
        """Clean restart on the same data directory and port."""
        self.stop()
        self.start()

    def crash_restart(self):
        """kill -9, then start again on the same data directory and port."""
        self.kill9()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self, keep):
        self.kill9()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Session checks and markers.


def pytest_configure(config):
    config.addinivalue_line("markers", "broker: needs the tidewater binary")


def pytest_collection_modifyitems(config, items):
    if binary_present() or config.option.collectonly:
        return
    if ALLOW_MISSING:
        skip = pytest.mark.skip(reason=f"broker binary {BIN} missing (TIDEWATER_ALLOW_MISSING_BROKER=1)")
        for item in items:
            item.add_marker(skip)
        return
    pytest.exit(f"broker binary {BIN} is missing: run `cargo build --release` or set TIDEWATER_BIN "
                f"(TIDEWATER_ALLOW_MISSING_BROKER=1 skips instead)", returncode=3)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for b in list(_brokers):
            rep.sections.append((f"{b.name} {b.bootstrap} log ({b.log_path})", b.log()))


@pytest.fixture(autouse=True)
def _track_brokers(request):
    _brokers.clear()
    yield
    failed = any(getattr(request.node, "rep_" + w, None) is not None and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    errors = []
    for b in list(_brokers):
        try:
            b.stop()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            b.cleanup(keep=failed or bool(errors))
    _brokers.clear()
    if errors:
        pytest.fail("clean shutdown failed:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def broker():
    """A broker with 2 shards."""
    return Broker(cores=2)


@pytest.fixture
def broker_1core():
    """A broker with a single shard."""
    return Broker(cores=1)


@pytest.fixture(params=[1, 2], ids=["cores1", "cores2"])
def any_broker(request):
    """The same test against 1 and 2 shards."""
    return Broker(cores=request.param)


@pytest.fixture
def broker_factory():
    """make(cores=2, config=TOML_TEXT, env={...}, extra=[...]) -> Broker; all are stopped
    (SIGTERM, exit 0 asserted) after the test."""
    return lambda **kw: Broker(**kw)


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:12]
