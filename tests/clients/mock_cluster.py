"""librdkafka's mock cluster as a stand-alone broker: an independent Kafka implementation to point
tools at (tidewater-bench, perf/compare.sh), so they are shown to work beyond Tidewater.

Prints `bootstrap HOST:PORT` on stdout once the cluster listens, then serves until stdin closes.
The mock keeps everything in memory and has no CreateTopics (it creates topics on Metadata, with
its own partition count); it is a protocol peer, not a performance reference.
"""
import logging
import re
import sys
import threading

import confluent_kafka


class _Grab(logging.Handler):
    def __init__(self):
        super().__init__()
        self.bootstrap = None

    def emit(self, record):
        # "Mock cluster enabled: original bootstrap.servers ... replaced with HOST:PORT" (notice)
        m = re.search(r"replaced with ([0-9.]+:[0-9]+)", record.getMessage())
        if m and self.bootstrap is None:
            self.bootstrap = m.group(1)


def main():
    grab = _Grab()
    log = logging.getLogger("mock")
    log.addHandler(grab)
    log.setLevel(logging.DEBUG)
    # The client owns the mock cluster: it lives as long as this producer.
    p = confluent_kafka.Producer({"test.mock.num.brokers": 1, "logger": log})
    for _ in range(100):
        p.poll(0.1)
        if grab.bootstrap:
            break
    if not grab.bootstrap:
        sys.exit("the mock cluster never reported its address")
    print(f"bootstrap {grab.bootstrap}", flush=True)
    log.removeHandler(grab)
    # Serve until the parent closes our stdin, polling so the client's log queue stays drained.
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    while not closed.is_set():
        p.poll(0.2)


if __name__ == "__main__":
    main()
