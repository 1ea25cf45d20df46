"""Runs the real `tidewater` binary on a loopback port, with crash/pause helpers."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TIDEWATER_BIN") or os.path.join(ROOT, "target", "release", "tidewater")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_ok(port, timeout=1.0):
    """ApiVersions v0 round trip."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            body = struct.pack(">hhih", 18, 0, 1, -1)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(4)
            return len(head) == 4 and struct.unpack(">i", head)[0] > 4
    except OSError:
        return False


class Broker:
    def __init__(self, cores=2, extra=(), workdir=None, port=None, cpus=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="tidewater-faults-")
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "data")
        self.port = port or free_port()
        self.cores = cores
        self.extra = list(extra)
        self.cpus = cpus  # taskset CPU list: the broker pins its shards within it
        self.log_path = os.path.join(self.dir, "broker.log")
        self.proc = None
        self.starts = 0

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=30):
        args = [BIN, "serve", "--data-dir", self.data, "--listen", self.bootstrap, "--cores", str(self.cores)]
        args += self.extra
        if self.cpus:
            args = ["taskset", "-c", self.cpus] + args
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start #{self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        self.starts += 1
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if api_versions_ok(self.port):
                return self
            time.sleep(0.05)
        diag = self.diagnose()
        raise RuntimeError(f"broker did not start in {timeout}s (pid {self.proc.pid}):\n{diag}\n{self.log()[-4000:]}")

    def diagnose(self):
        """Thread states (and gdb backtraces where gdb exists) of a stuck broker."""
        out = []
        pid = self.proc.pid
        try:
            for tid in sorted(os.listdir(f"/proc/{pid}/task")):
                def rd(name):
                    try:
                        with open(f"/proc/{pid}/task/{tid}/{name}") as f:
                            return f.read().strip()
                    except OSError:
                        return "?"
                out.append(f"thread {tid} {rd('comm')} state={rd('stat').split(' ')[2] if rd('stat') != '?' else '?'} wchan={rd('wchan')}")
        except OSError as e:
            out.append(f"no /proc: {e}")
        if shutil.which("gdb"):
            try:
                r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"],
                                   capture_output=True, text=True, timeout=60)
                out.append(r.stdout[-12000:])
            except (subprocess.TimeoutExpired, OSError) as e:
                out.append(f"gdb: {e}")
        text = "\n".join(out)
        with open(os.path.join(self.dir, f"stuck-{pid}.txt"), "w") as f:
            f.write(text)
        return text

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=30):
        """SIGTERM; returns the exit code (0 for a clean stop)."""
        rc = None
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self.proc = None
        return rc

    def kill9(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def crash_restart(self):
        self.kill9()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0


def create_topic(bootstrap, name, partitions=1, config=None, timeout=20):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
    fut.result(timeout)
