#!/usr/bin/env python3
"""The disk's own floor for acks=all produce latency: a model of the broker's write path with
no broker in it.

Each of PARTITIONS files is a fresh preallocated segment with one writer thread that does what
a partition's flusher does: take every byte appended since its last write, rewrite the partial
last page plus the new bytes as one O_DIRECT|O_DSYNC write, then mark those appends durable.
Requests arrive open loop at REQUESTS_PER_SEC, each appending RATE/REQUESTS_PER_SEC bytes
spread over all partitions (one producer connection writing every partition), and a request is
acknowledged once all its appends are durable: latency is from the scheduled time to the last
of them. No CPU work, no network, no copies: what remains is the disk (and the filesystem).

With --written every block is written once before the run, so appends overwrite written blocks
(what zeroing ahead buys) instead of converting unwritten extents.

Usage: perf/ack-floor.py [--dir DIR] [--partitions 16] [--mb-per-sec 475]
                         [--requests-per-sec 1000] [--seconds 10] [--written]  -> JSON on stdout
"""
import argparse
import json
import mmap
import os
import threading
import time

PAGE = 4096


def percentiles(values):
    v = sorted(values)
    if not v:
        return {}
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    return {
        "p50": round(pick(0.50) * 1e3, 3),
        "p99": round(pick(0.99) * 1e3, 3),
        "p99_9": round(pick(0.999) * 1e3, 3),
        "max": round(v[-1] * 1e3, 3),
    }


class Partition:
    def __init__(self, path, reserve_bytes, buf, written):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT | os.O_DSYNC)
        os.posix_fallocate(self.fd, 0, reserve_bytes)
        if written:  # overwrite mode: every block written once before the run (zeroed ahead)
            lay = os.open(path, os.O_WRONLY | os.O_DIRECT)
            for pos in range(0, reserve_bytes, len(buf)):
                os.pwrite(lay, memoryview(buf)[: min(len(buf), reserve_bytes - pos)], pos)
            os.fsync(lay)
            os.close(lay)
        self.buf = buf
        self.reserve = reserve_bytes
        self.cond = threading.Condition()
        self.pending = []  # (request, bytes)
        self.flushed = 0
        self.stop = False
        self.write_s = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def append(self, req, nbytes):
        with self.cond:
            self.pending.append((req, nbytes))
            self.cond.notify()

    def run(self):
        while True:
            with self.cond:
                while not self.pending and not self.stop:
                    self.cond.wait()
                if self.stop and not self.pending:
                    return
                taken, self.pending = self.pending, []
            new = sum(n for _, n in taken)
            start = self.flushed - self.flushed % PAGE
            end = self.flushed + new
            length = (end - start + PAGE - 1) // PAGE * PAGE
            assert start + length <= self.reserve, "main() reserves every byte the run appends"
            t0 = time.monotonic()
            pos = 0
            while pos < length:
                piece = min(length - pos, len(self.buf))
                os.pwrite(self.fd, memoryview(self.buf)[:piece], start + pos)
                pos += piece
            done = time.monotonic()
            self.write_s.append(done - t0)
            self.flushed += new
            for req, _ in taken:
                req.done_one(done)


class Request:
    def __init__(self, due, parts, sink):
        self.due = due
        self.left = parts
        self.last = 0.0
        self.lock = threading.Lock()
        self.sink = sink

    def done_one(self, t):
        with self.lock:
            self.left -= 1
            self.last = max(self.last, t)
            if self.left == 0:
                self.sink.append(self.last - self.due)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--mb-per-sec", type=float, default=475.0)
    ap.add_argument("--requests-per-sec", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--written", action="store_true",
                    help="write every block once first: appends then overwrite written blocks")
    a = ap.parse_args()
    req_bytes = a.mb_per_sec * 1e6 / a.requests_per_sec
    per_part = max(1, int(req_bytes / a.partitions))
    total_s = a.seconds + a.warmup
    reserve = int(per_part * a.requests_per_sec * total_s * 1.1) // PAGE * PAGE + (64 << 20)
    d = os.path.join(a.dir, f"tidewater-ack-floor.{os.getpid()}")
    os.makedirs(d, exist_ok=True)
    buf = mmap.mmap(-1, 8 << 20)  # page-aligned, as O_DIRECT needs
    buf.write(os.urandom(len(buf)))
    parts = [Partition(os.path.join(d, f"p{i}.log"), reserve, buf, a.written) for i in range(a.partitions)]
    lat, warm = [], []
    t0 = time.monotonic()
    i = 0
    try:
        while True:
            due = t0 + i / a.requests_per_sec
            if due - t0 >= total_s:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            req = Request(due, a.partitions, warm if due - t0 < a.warmup else lat)
            for p in parts:
                p.append(req, per_part)
            i += 1
        for p in parts:
            with p.cond:
                p.stop = True
                p.cond.notify()
        for p in parts:
            p.thread.join()
    finally:
        for p in parts:
            os.close(p.fd)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        os.rmdir(d)
    writes = [w for p in parts for w in p.write_s]
    print(json.dumps({
        "partitions": a.partitions,
        "mb_per_sec": a.mb_per_sec,
        "requests_per_sec": a.requests_per_sec,
        "blocks": "written" if a.written else "fresh preallocated",
        "requests": len(lat),
        "ack_latency_ms": percentiles(lat),
        "write_latency_ms": percentiles(writes),
        "writes": len(writes),
    }, indent=1))


if __name__ == "__main__":
    main()
