#!/usr/bin/env python3
"""Seeds the fuzz corpora from real client traffic.

Starts a broker advertised at a small TCP proxy (127.0.0.1), runs confluent-kafka (every
compression codec, admin calls, consume), kafka-python and kcat sessions through it, and saves:
  fuzz/corpus/request/<api>-v<version>-<hash>   each request frame (without its size prefix)
  fuzz/corpus/frame/<hash>                      client byte streams (2 parameter bytes + stream)
  fuzz/corpus/batch/<codec>-<hash>              record batches found inside produce requests
  fuzz/corpus/recovery/<hash>                   segment files the broker wrote (1 parameter byte)
Deduplicated by (api, version, size bucket); a few hundred small files at most.

  capture_corpus.py [--out fuzz/corpus]
"""
import argparse
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from broker import ROOT, Broker, free_port  # noqa: E402

CRC_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC_TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class Proxy:
    """Forwards 127.0.0.1:port to the broker and records every client->broker byte."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.streams = []  # bytearray per connection
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            rec = bytearray()
            with self.lock:
                self.streams.append(rec)
            threading.Thread(target=self.pump, args=(c, b, rec), daemon=True).start()
            threading.Thread(target=self.pump, args=(b, c, None), daemon=True).start()

    @staticmethod
    def pump(src, dst, rec):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if rec is not None and len(rec) < 4 << 20:
                    rec.extend(d)
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def frames(stream):
    pos = 0
    while pos + 4 <= len(stream):
        n = struct.unpack(">i", stream[pos:pos + 4])[0]
        if n < 0 or pos + 4 + n > len(stream):
            break
        yield bytes(stream[pos + 4:pos + 4 + n])
        pos += 4 + n


def batches_in(frame):
    """RecordBatch v2 candidates inside a produce frame: magic 2 and a matching CRC32C."""
    out = []
    i = 0
    while i + 61 <= len(frame):
        if frame[i + 16] == 2:
            length = struct.unpack(">i", frame[i + 8:i + 12])[0]
            end = i + 12 + length
            if 49 <= length and end <= len(frame):
                crc = struct.unpack(">I", frame[i + 17:i + 21])[0]
                if crc32c(frame[i + 21:end]) == crc:
                    out.append(frame[i:end])
                    i = end
                    continue
        i += 1
    return out


def h8(b):
    return hashlib.sha1(b).hexdigest()[:10]


def traffic(bootstrap, log):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    base = "corpus-" + uuid.uuid4().hex[:6]
    topics = [f"{base}-{c}" for c in ("none", "gzip", "snappy", "lz4", "zstd")]
    for f in admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        f.result(15)
    for t in topics:
        codec = t.rsplit("-", 1)[1]
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "enable.idempotence": codec != "none",
                      "acks": "all", "linger.ms": 5, "batch.num.messages": 50})
        for i in range(120):
            p.produce(t, key=f"k{i % 7}".encode(), value=(f"value-{i}-" + "x" * (i % 40)).encode(),
                      headers=[("h", b"v")] if i % 3 == 0 else None)
            if i % 40 == 39:
                p.flush(10)
        p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "corpus", "enable.auto.commit": False})
    c.assign([TopicPartition(topics[0], 0, 0), TopicPartition(topics[4], 1, 0)])
    for _ in range(10):
        c.poll(0.3)
    c.get_watermark_offsets(TopicPartition(topics[1], 0), timeout=5)
    c.offsets_for_times([TopicPartition(topics[1], 0, int(time.time() * 1000) - 60000)], timeout=5)
    c.close()
    admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topics[0])])[
        ConfigResource(ConfigResource.Type.TOPIC, topics[0])].result(10)
    admin.create_partitions([NewPartitions(topics[0], 3)])[topics[0]].result(10)
    try:
        admin.delete_records([TopicPartition(topics[0], 0, 3)])
    except Exception as e:  # older clients lack delete_records
        log(f"delete_records: {e}")
    time.sleep(1)
    admin.delete_topics([topics[2]])[topics[2]].result(10)
    # kafka-python
    try:
        from kafka import KafkaConsumer, KafkaProducer
        kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for i in range(30):
            kp.send(topics[0], key=b"kp", value=b"kafka-python-%d" % i)
        kp.flush(10)
        kp.close()
        kc = KafkaConsumer(topics[0], bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=2000, group_id=None)
        for _ in kc:
            pass
        kc.close()
    except Exception as e:
        log(f"kafka-python: {e}")
    # kcat
    if shutil.which("kcat"):
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topics[3], "-K:", "-z", "lz4"],
                       input=b"a:1\nb:2\nc:3\n", timeout=20, capture_output=True)
        subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topics[3], "-o", "beginning", "-e"],
                       timeout=20, capture_output=True)
        subprocess.run(["kcat", "-L", "-b", bootstrap], timeout=20, capture_output=True)
    return topics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz", "corpus"))
    args = ap.parse_args()
    broker = Broker(cores=2)
    # the proxy needs the broker port first; the broker advertises the proxy
    proxy = Proxy(broker.port)
    broker.extra = ["--advertised", f"127.0.0.1:{proxy.port}"]
    broker.start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    traffic(bootstrap, print)
    time.sleep(1)
    broker.stop()
    for sub in ("request", "frame", "batch", "recovery"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    seen = set()
    counts = {"request": 0, "frame": 0, "batch": 0, "recovery": 0}
    with proxy.lock:
        streams = [bytes(s) for s in proxy.streams]
    for stream in streams:
        if stream:
            chunk = stream[:16384]
            name = os.path.join(args.out, "frame", h8(chunk))
            with open(name, "wb") as f:
                f.write(bytes([255, 13]) + chunk)
            counts["frame"] += 1
        for fr in frames(stream):
            if len(fr) < 8:
                continue
            key, ver = struct.unpack(">hh", fr[:4])
            if key == 0:
                for b in batches_in(fr):
                    codec = struct.unpack(">h", b[21:23])[0] & 7
                    bb = ("batch", codec, len(b) // 64)
                    if bb in seen:
                        continue
                    seen.add(bb)
                    with open(os.path.join(args.out, "batch", f"c{codec}-{h8(b)}"), "wb") as f:
                        f.write(b)
                    counts["batch"] += 1
            bucket = (key, ver, len(fr) // 64)
            if bucket in seen or len(fr) > 65536:
                continue
            seen.add(bucket)
            with open(os.path.join(args.out, "request", f"api{key}-v{ver}-{h8(fr)}"), "wb") as f:
                f.write(fr)
            counts["request"] += 1
    # segment files the broker wrote (trimmed of preallocated zeros, capped)
    for dirpath, _dirs, files in os.walk(broker.data):
        for fn in files:
            if fn.endswith(".log"):
                with open(os.path.join(dirpath, fn), "rb") as f:
                    data = f.read(65536).rstrip(b"\x00")
                if data:
                    with open(os.path.join(args.out, "recovery", h8(data)), "wb") as f:
                        f.write(b"\x00" + data)
                    counts["recovery"] += 1
    print(counts)


if __name__ == "__main__":
    main()
