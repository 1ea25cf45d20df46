#!/usr/bin/env bash
# Everything behind perf/RESULTS.md in one run on a 2-core machine:
#   1. the machine's ceilings (baseline.sh: fio, iperf3), and the generator's own (--dry-run)
#   2. the matrix against one shard pinned to CPU 0, the generator pinned to CPU 1, with the
#      broker's peak RSS per row, and a flamegraph during 1 KiB acks=all produce
#   3. the matrix against two shards (both CPUs, generator unpinned)
#   4. the disk's own acks=all latency floor (ack-floor.py) at each one-shard e2e row's byte rate:
#      the same write discipline with no broker, so e2e latency can be read against it
#   5. REPORT.md (perf/report.py): every figure beside the ceilings of this run as a ratio, the
#      generator's ceiling, the targets checked, the floors and the flamegraph's top
# Run it on a quiet machine (no fuzzers, no builds): the figures are only as good as that.
#   perf/run-report.sh OUTDIR        (e.g. perf/results/2026-11-30)
# Env: DURATION (default 8) seconds per row, E2E_LINGER (default 0 ms), TIDEWATER (broker binary),
#      DATA (scratch dir; the one-shard matrix keeps about 60 GB there until it ends; retention
#      to save space would cut the topics the consume rows read from the start).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out="$1"; mkdir -p "$out"
broker_bin="${TIDEWATER:-$root/target/release/tidewater}"
bench="$root/target/release/tidewater-bench"
[ -x "$broker_bin" ] && [ -x "$bench" ] || { echo "cargo build --release first" >&2; exit 1; }
export DURATION="${DURATION:-8}"
# e2e rows without linger: the latency target is about the broker, not a client's batching delay
export E2E_LINGER="${E2E_LINGER:-0}"
data="${DATA:-$(mktemp -d /tmp/tidewater-report-XXXX)}"
port=19592
pid=""
stop_broker() { # keeps going (and keeps the broker's log) if the broker had died
  if [ -n "$pid" ] && ! kill "$pid" 2>/dev/null; then
    echo "the broker had exited before the end of its matrix: log in $out/broker-died.log" >&2
    cp "$data/broker/broker.log" "$out/broker-died.log" 2>/dev/null || true
  fi
  [ -n "$pid" ] && { wait "$pid" 2>/dev/null || true; }
  pid=""
}
trap stop_broker EXIT
start_broker() { # cpus cores
  rm -rf "$data/broker"; mkdir -p "$data/broker"
  taskset -c "$1" "$broker_bin" serve --data-dir "$data/broker/data" --listen "127.0.0.1:$port" \
    --cores "$2" > "$data/broker/broker.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "broker did not start: $(tail -5 "$data/broker/broker.log")" >&2; exit 1
}

echo "=== 1. ceilings" >&2
if [ "${SKIP_BASELINE:-0}" != 1 ] || [ ! -s "$out/baseline.json" ]; then
  # baseline.sh may exit non-zero on teardown (iperf3 server); the JSON is what counts
  "$here/baseline.sh" "$data" > "$out/baseline.json" || true
  python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$out/baseline.json" \
    || { echo "baseline.sh produced no JSON" >&2; exit 1; }
fi

echo "=== 1b. the generator's own ceiling (--dry-run: encodes and frames, no broker; CPU 1)" >&2
for size in 100 1024; do
  for parts in 1 16; do
    taskset -c 1 "$bench" produce --dry-run --message-size "$size" --partitions "$parts" \
      --duration "$DURATION" --warmup 1 --quiet --json "$out/generator-dry-run-${size}B-${parts}p.json" \
      > /dev/null || echo "dry run failed for ${size} B ${parts} p" >&2
  done
done

echo "=== 2. one shard on CPU 0, generator on CPU 1" >&2
start_broker 0 1
BENCH_CPU=1 BROKER_PID=$pid "$here/run-matrix.sh" "127.0.0.1:$port" "$out/matrix-1shard"
# flamegraph of the 1 KiB acks=all produce path
taskset -c 1 "$bench" produce --bootstrap "127.0.0.1:$port" --topic flame --partitions 1 \
  --message-size 1024 --acks all --duration 20 --warmup 2 --quiet > /dev/null 2>&1 &
gen=$!
sleep 4
FLAMEGRAPH_FALLBACK="${FLAMEGRAPH_FALLBACK:-1}" "$here/flamegraph.sh" "$pid" 12 "$out/flame-produce-1k-acksall.svg" > "$out/flame-top.txt" 2>&1 || true
wait "$gen" || true
stop_broker

echo "=== 3. two shards, both CPUs" >&2
start_broker 0-1 2
BROKER_PID=$pid "$here/run-matrix.sh" "127.0.0.1:$port" "$out/matrix-2shard"
stop_broker

echo "=== 4. the disk's acks=all latency floor at the e2e rows' rates" >&2
for e2e in "$out"/matrix-1shard/e2e-*.json; do
  [ -e "$e2e" ] || continue
  mbps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['mb_per_sec'])" "$e2e")
  python3 "$here/ack-floor.py" --dir "$data" --mb-per-sec "$mbps" --seconds "$DURATION" \
    > "$out/ack-floor-$(basename "$e2e")" || echo "ack-floor.py failed for $e2e" >&2
done
rm -rf "$data"
echo "=== 5. REPORT.md: every figure beside this run's ceilings, and the targets" >&2
python3 "$here/report.py" "$out" >&2
echo "results in $out (REPORT.md, baseline.json, generator-dry-run-*, matrix-1shard/, matrix-2shard/, flame-*, ack-floor-*)" >&2
