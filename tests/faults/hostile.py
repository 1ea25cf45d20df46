#!/usr/bin/env python3
"""Hostile and careless clients against a real broker.

Each attack runs while a well-behaved confluent-kafka producer (latency_probe.py) measures its
produce round trip; after each we check the broker is alive, answers ApiVersions, and read its
RSS. Raw protocol cases record what the broker did: "closed", "response" (with error code where
we parse one) or "silent" (nothing within the wait).

  hostile.py [--loris 200 --loris-s 10 --flood 2000 --idle 1000 --stuck 20] [--json OUT]
  hostile.py --long      (1000 slow-loris connections for 30 s, bigger floods)
"""
import argparse
import json
import os
import random
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from broker import Broker, api_versions_ok, create_topic  # noqa: E402


# ---- protocol helpers -------------------------------------------------------------------------

def kstr(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def header(api_key, version, corr, client_id="hostile"):
    return struct.pack(">hhi", api_key, version, corr) + kstr(client_id)


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0(corr=1):
    return frame(header(18, 0, corr))


def fetch_v4(topic, partition, offset, corr, max_bytes=1 << 20, max_wait_ms=0):
    body = struct.pack(">iiii", -1, max_wait_ms, 1, max_bytes) + struct.pack(">b", 0)
    body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", partition, offset, max_bytes)
    return frame(header(1, 4, corr) + body)


def connect(port, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def outcome(sock, wait=2.0):
    """What the broker did after we sent something: closed / response / silent."""
    sock.settimeout(wait)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 4:
                size = struct.unpack(">i", data[:4])[0]
                if len(data) >= 4 + size:
                    return {"result": "response", "size": size, "corr": struct.unpack(">i", data[4:8])[0],
                            "head": data[4:24].hex()}
    except socket.timeout:
        return {"result": "silent" if not data else "partial", "bytes": len(data)}
    except (ConnectionResetError, BrokenPipeError):
        return {"result": "closed", "how": "reset"}
    return {"result": "closed", "bytes": len(data)}


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---- raw protocol cases -----------------------------------------------------------------------

def raw_cases(rng):
    """(name, bytes to send, expectation) — expectation is what Kafka does."""
    cases = [
        ("negative length -1", struct.pack(">i", -1), "closed"),
        ("negative length i32::MIN", struct.pack(">i", -(2 ** 31)), "closed"),
        ("zero length", struct.pack(">i", 0), "closed"),
        ("length 4 (shorter than a header)", frame(b"\x00\x12\x00\x00"), "closed"),
        ("huge length 2^31-1", struct.pack(">i", 2 ** 31 - 1) + b"\x00" * 100, "closed"),
        ("length above socket.request.max.bytes", struct.pack(">i", 104857601) + b"\x00" * 100, "closed"),
        ("unknown api key 999", frame(header(999, 0, 7)), "closed"),
        ("api key -1", frame(header(-1, 0, 7)), "closed"),
        ("api key 17 (SaslHandshake, not served)", frame(header(17, 1, 7)), "closed"),
        ("Produce v100", frame(header(0, 100, 7)), "closed"),
        ("Fetch v-1", frame(header(1, -1, 7)), "closed"),
        ("ApiVersions v99 (KIP-511 v0 answer)", frame(header(18, 99, 7)), "response"),
        ("header with client_id length 30000 (lying)", frame(struct.pack(">hhih", 18, 0, 7, 30000) + b"x" * 10), "closed"),
        ("header with client_id length -5", frame(struct.pack(">hhih", 18, 0, 7, -5)), "closed"),
        ("Metadata v1 truncated body", frame(header(3, 1, 7) + b"\x00\x00"), "closed"),
        ("Metadata v1 topic array length 2^31-1", frame(header(3, 1, 7) + struct.pack(">i", 2 ** 31 - 1)), "closed"),
        ("Produce v7 array length 10^9, no elements",
         frame(header(0, 7, 7) + kstr(None) + struct.pack(">hii", -1, 1000, 10 ** 9)), "closed"),
        ("Fetch v4 topic count 10^9", frame(header(1, 4, 7) + struct.pack(">iiiib", -1, 0, 1, 1 << 20, 0) + struct.pack(">i", 10 ** 9)), "closed"),
    ]
    # garbage bodies with a valid header for every served API key and a few versions each
    served = {0: (3, 9), 1: (4, 11), 2: (1, 7), 3: (0, 12), 18: (0, 3), 19: (2, 7), 20: (1, 6), 22: (0, 4),
              37: (0, 3), 21: (0, 2), 32: (1, 4)}
    for key, (lo, hi) in served.items():
        for v in sorted({lo, hi, rng.randint(lo, hi)}):
            body = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 7, 64, 300])))
            hv = 2 if _flexible(key, v) else 1
            hdr = header(key, v, 7) + (b"\x00" if hv == 2 else b"")
            cases.append((f"api {key} v{v} garbage body {len(body)}B", frame(hdr + body), "closed-or-error"))
    return cases


def _flexible(key, v):
    first_flex = {0: 9, 1: 12, 2: 6, 3: 9, 18: 3, 19: 5, 20: 4, 22: 2, 37: 2, 21: 2, 32: 4}
    return v >= first_flex.get(key, 99)


def run_raw(broker, rng, crashes):
    """Every raw case on its own connection. A case that kills the broker is recorded (with the
    tail of its log) and the broker is restarted so the remaining cases still run."""
    results = []
    for name, data, expect in raw_cases(rng):
        s = connect(broker.port)
        try:
            s.sendall(data)
            o = outcome(s, wait=1.5)
        except OSError as e:
            o = {"result": "closed", "how": str(e)}
        s.close()
        ok = (o["result"] == expect or (expect == "closed-or-error" and o["result"] in ("closed", "response")))
        time.sleep(0.05)
        if not broker.alive() or not api_versions_ok(broker.port, timeout=3):
            ok = False
            o["broker_died"] = True
            tail = broker.log()[-6000:]
            crashes.append({"case": name, "bytes_hex": data[:64].hex(), "log_tail": tail})
            broker.kill9()
            broker.start()
        results.append({"case": name, "expect": expect, **o, "as_expected": ok})
    port = broker.port
    # truncated frame then close; lying length then silence; a request dribbled byte by byte
    s = connect(port)
    s.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00" + b"\x00" * 10)
    s.close()
    results.append({"case": "truncated frame then close", "expect": "no crash", "result": "sent"})
    s = connect(port)
    s.sendall(struct.pack(">i", 50000) + b"\x00" * 100)
    o = outcome(s, wait=1.0)
    s.close()
    results.append({"case": "lying length 50000, 100 bytes sent", "expect": "silent", **o,
                    "as_expected": o["result"] == "silent"})
    s = connect(port)
    req = api_versions_v0(corr=42) + api_versions_v0(corr=43)
    for b in req:
        s.send(bytes([b]))
        time.sleep(0.002)
    o = outcome(s, wait=2.0)
    s.close()
    results.append({"case": "two ApiVersions dribbled 1 byte at a time", "expect": "response", **o,
                    "as_expected": o["result"] == "response" and o.get("corr") == 42})
    # a valid request right behind an invalid one: Kafka closes, the second is not answered
    s = connect(port)
    s.sendall(frame(header(999, 0, 1)) + api_versions_v0(corr=2))
    o = outcome(s, wait=1.5)
    s.close()
    results.append({"case": "unknown api then valid request in one write", "expect": "closed", **o,
                    "as_expected": o["result"] == "closed"})
    return results


# ---- connection-level attacks -----------------------------------------------------------------

def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def slow_loris(port, conns, seconds, pid):
    """`conns` connections each sending a valid-looking frame one byte a second."""
    payload = struct.pack(">i", 4096) + header(18, 0, 1) + b"\x00" * 4000
    socks = []
    refused = 0
    for _ in range(conns):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            refused += 1
    pos = 0
    t0 = time.time()
    closed_by_broker = 0
    rss = [rss_kib(pid)]
    while time.time() - t0 < seconds:
        alive = []
        for s in socks:
            try:
                s.send(payload[pos:pos + 1])
                alive.append(s)
            except (BlockingIOError, InterruptedError):
                alive.append(s)
            except OSError:
                closed_by_broker += 1
                s.close()
        socks = alive
        pos = (pos + 1) % len(payload)
        rss.append(rss_kib(pid))
        time.sleep(1.0)
    still_open = len(socks)
    for s in socks:
        s.close()
    return {"connections": conns, "refused": refused, "closed_by_broker": closed_by_broker,
            "still_open_at_end": still_open, "seconds": seconds, "rss_kib_max": max(rss)}


def connection_flood(port, n, pid):
    """Open and close `n` connections as fast as possible, then hold `n` idle ones open."""
    t0 = time.time()
    failures = 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.close()
        except OSError:
            failures += 1
    churn_s = time.time() - t0
    held, refused = [], 0
    for _ in range(n):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            refused += 1
    time.sleep(2)
    rss = rss_kib(pid)
    # are they all still served? ask ApiVersions on a sample
    answered = 0
    sample = held[:: max(1, len(held) // 50)]
    for s in sample:
        try:
            s.sendall(api_versions_v0(5))
            if outcome(s, wait=2.0)["result"] == "response":
                answered += 1
        except OSError:
            pass
    for s in held:
        s.close()
    return {"churn_connections": n, "churn_failures": failures, "churn_s": round(churn_s, 2),
            "held": len(held), "held_refused": refused, "sample": len(sample), "sample_answered": answered,
            "rss_kib_while_held": rss}


def stuck_consumers(port, topic, conns, requests_per_conn, seconds, pid):
    """Connections that pipeline many Fetch requests and never read their socket."""
    socks = []
    sent = 0
    for c in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        socks.append([s, 0])
    t0 = time.time()
    rss = [rss_kib(pid)]
    blocked = 0
    while time.time() - t0 < seconds:
        progress = False
        for entry in socks:
            s, n = entry
            if n >= requests_per_conn:
                continue
            try:
                s.send(fetch_v4(topic, 0, 0, n, max_bytes=1 << 20))
                entry[1] += 1
                sent += 1
                progress = True
            except (BlockingIOError, InterruptedError):
                blocked += 1
            except OSError:
                entry[1] = requests_per_conn
        rss.append(rss_kib(pid))
        if not progress:
            time.sleep(0.2)
    rss.append(rss_kib(pid))
    for s, _ in socks:
        s.close()
    return {"connections": conns, "fetches_sent": sent, "send_blocked": blocked,
            "rss_kib_max": max(rss), "seconds": seconds}


def lying_length_hogs(port, conns, seconds, pid):
    """Connections that announce a frame just under socket.request.max.bytes and send only a
    little of it: the broker reserves request memory for the announced size."""
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(struct.pack(">i", 100 * 1024 * 1024) + header(0, 7, 1) + b"\x00" * 200_000)
        socks.append(s)
    time.sleep(seconds)
    rss = rss_kib(pid)
    for s in socks:
        s.close()
    return {"connections": conns, "announced_bytes_each": 100 * 1024 * 1024, "seconds": seconds, "rss_kib": rss}


# ---- orchestration ----------------------------------------------------------------------------

def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def window_stats(samples, t0, t1):
    xs = [s["ms"] for s in samples if t0 <= s["t"] < t1]
    return {"n": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99), "max_ms": round(max(xs), 1) if xs else None}


def read_samples(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    except OSError:
        pass
    return out


def run(args):
    rng = random.Random(args.seed)
    raise_nofile(max(args.loris, args.flood) * 2 + 256)
    workdir = args.workdir or tempfile.mkdtemp(prefix="tidewater-hostile-")
    if args.client_cpus:
        # the attacks and the latency probe (a child) run here, apart from the broker's cores
        os.sched_setaffinity(0, cpu_list(args.client_cpus))
    broker = Broker(cores=args.cores, extra=args.broker_arg, workdir=os.path.join(workdir, "broker"),
                    cpus=args.broker_cpus)
    broker.start()
    topic = "hostile-" + uuid.uuid4().hex[:6]
    probe_topic = "probe-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    create_topic(broker.bootstrap, probe_topic, 1)
    # data for the stuck consumers to fetch: ~prefill_mb MiB in partition 0
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "log_level": 3})
    val = os.urandom(10_000)
    for i in range(args.prefill_mb * 100):
        while True:
            try:
                p.produce(topic, value=val)
                break
            except BufferError:
                p.poll(0.1)
    p.flush(60)
    if args.cold:
        # a clean restart empties the read cache: fetches are served from disk
        broker.stop()
        broker.start()
    report = {"workdir": workdir, "rss_kib_start": rss_kib(broker.pid)}
    stop = os.path.join(workdir, "stop-probe")
    lat_path = os.path.join(workdir, "latency.jsonl")
    probe = subprocess.Popen([sys.executable, os.path.join(HERE, "latency_probe.py"), "--bootstrap", broker.bootstrap,
                              "--topic", probe_topic, "--out", lat_path, "--stop", stop],
                             preexec_fn=(lambda: os.sched_setaffinity(0, cpu_list(args.probe_cpus)))
                             if args.probe_cpus else None)
    windows = []

    def phase(name, fn):
        t0 = time.time()
        try:
            r = fn()
        except Exception as e:  # an attack failing on our side is a finding too
            r = {"error": repr(e)}
        t1 = time.time()
        alive = broker.alive()
        r.update({"broker_alive": alive, "answers_api_versions": alive and api_versions_ok(broker.port, timeout=5),
                  "rss_kib_after": rss_kib(broker.pid), "duration_s": round(t1 - t0, 2)})
        windows.append((name, t0, t1))
        report[name] = r
        print(f"{name}: " + json.dumps({k: v for k, v in r.items() if k != "cases"})[:600], flush=True)
        time.sleep(1)

    def settle(seconds):
        """RSS samples after an attack ended: does the broker give the memory back?"""
        samples = []
        for _ in range(int(seconds * 2)):
            samples.append(rss_kib(broker.pid))
            time.sleep(0.5)
        return {"rss_kib_samples": samples[::2], "answers_api_versions_now": api_versions_ok(broker.port, timeout=3)}

    wanted = set(args.phases.split(",")) if args.phases else None
    crashes = []
    report["raw_crashes"] = crashes
    attacks = [
        ("raw_protocol", lambda: {"cases": run_raw(broker, rng, crashes)}),
        ("slow_loris", lambda: slow_loris(broker.port, args.loris, args.loris_s, broker.pid)),
        ("connection_flood", lambda: connection_flood(broker.port, args.flood, broker.pid)),
        ("stuck_consumers", lambda: stuck_consumers(broker.port, topic, args.stuck, 500, args.stuck_s, broker.pid)),
        ("lying_length_hogs", lambda: lying_length_hogs(broker.port, args.hogs, args.hogs_s, broker.pid)),
    ]
    time.sleep(1)
    phase("quiet", lambda: (time.sleep(args.quiet_s), {})[1])
    for name, fn in attacks:
        if wanted is None or name in wanted:
            phase(name, fn)
            if args.settle_s:
                phase(name + "_settle", lambda: settle(args.settle_s))
    phase("quiet_after", lambda: (time.sleep(args.quiet_s), {})[1])
    open(stop, "w").close()
    try:
        probe.wait(timeout=40)
    except subprocess.TimeoutExpired:
        probe.kill()
    samples = read_samples(lat_path)
    report["latency"] = {name: window_stats(samples, t0, t1) for name, t0, t1 in windows}
    report["probe_failures"] = sum(1 for s in samples if not s.get("ok", True))
    raw = report.get("raw_protocol", {}).get("cases", [])
    report["raw_unexpected"] = [c for c in raw if c.get("as_expected") is False]
    report["broker_alive_at_end"] = broker.alive()
    report["rss_kib_end"] = rss_kib(broker.pid)
    report["clean_stop_rc"] = broker.stop()
    report["broker_log_panics"] = [ln for ln in broker.log().splitlines()
                                   if "panick" in ln or "memory allocation of" in ln][:10]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({"latency": report["latency"], "raw_unexpected": report["raw_unexpected"],
                      "raw_crashes": [c["case"] for c in crashes],
                      "rss_kib_start": report["rss_kib_start"], "rss_kib_end": report["rss_kib_end"],
                      "panics": report["broker_log_panics"], "clean_stop_rc": report["clean_stop_rc"]}, indent=1))
    return report


def cpu_list(text):
    return {int(c) for c in text.split(",")}


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--loris", type=int, default=200)
    ap.add_argument("--loris-s", type=float, default=10)
    ap.add_argument("--flood", type=int, default=2000)
    ap.add_argument("--stuck", type=int, default=20)
    ap.add_argument("--stuck-s", type=float, default=8)
    ap.add_argument("--hogs", type=int, default=6)
    ap.add_argument("--hogs-s", type=float, default=5)
    ap.add_argument("--quiet-s", type=float, default=5)
    ap.add_argument("--prefill-mb", type=int, default=20)
    ap.add_argument("--cold", action="store_true", help="restart the broker after the prefill (fetches read from disk)")
    ap.add_argument("--phases", help="comma list of attacks to run (default: all)")
    ap.add_argument("--settle-s", type=float, default=0, help="watch RSS this long after each attack")
    ap.add_argument("--long", action="store_true", help="1000 slow-loris connections for 30 s, 5000-connection flood")
    ap.add_argument("--broker-arg", action="append", default=[])
    ap.add_argument("--broker-cpus", help="taskset CPU list for the broker (e.g. 0)")
    ap.add_argument("--client-cpus", help="comma list of CPUs for the attacks and the probe (e.g. 1)")
    ap.add_argument("--probe-cpus", help="comma list of CPUs for the well-behaved probe client (default: as the attacks)")
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if args.long:
        args.loris, args.loris_s, args.flood, args.stuck, args.stuck_s = 1000, 30, 5000, 50, 20
    r = run(args)
    bad = not r["broker_alive_at_end"] or r["broker_log_panics"] or r["raw_unexpected"] or r["raw_crashes"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
