#!/usr/bin/env bash
# The standard workload matrix against one broker, with tidewater-bench.
#   produce: acks 1 / all  x  100 B / 1 KiB  x  1 / 16 partitions (closed loop, max rate)
#   consume: drain throughput of the 100 B and 1 KiB 16-partition topics
#   e2e:     end-to-end latency at 50% of the max acks=all 16-partition rate, per size
# Writes OUTDIR/<row>.json and <row>.csv (per-second series), OUTDIR/results.json (all rows),
# OUTDIR/summary.md and PNG plots (throughput by message size, latency percentile curves,
# throughput over time).
#
# Usage: perf/run-matrix.sh BOOTSTRAP OUTDIR
# Env:   BENCH      tidewater-bench binary (default: target/release/tidewater-bench)
#        BENCH_CPU  CPU list to pin the generator to with taskset (e.g. 1 or 2-3)
#        DURATION   measured seconds per row (default 10); WARMUP (default 2)
#        PRODUCERS  producer connections (default 1); BENCH_ARGS extra generator options
#        CONSUMERS  consumer connections of the consume and e2e rows (default 4: a consumer
#                   keeps one fetch in flight per connection, as Kafka clients do, so one
#                   connection measures round trips rather than the broker)
#        E2E_RATE   fixed e2e rate (msgs/s) instead of 50% of the measured max
#        E2E_LINGER linger (ms) of the open-loop e2e producers (default 5, Kafka's default)
#        PRODUCE_RATE open-loop rate (msgs/s) for the produce rows instead of closed loop (the
#                   same offered load for every broker; the e2e rows then run at half of it)
#        TOPIC_PREFIX topic name prefix (default: m<random>, fresh topics per run)
#        BROKER_PID the broker's pid: its peak RSS is sampled (every 0.2 s) during each row
#        PLOTS=0    skip the plots
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: $0 BOOTSTRAP OUTDIR" >&2; exit 2; }
bootstrap="$1"; out="$2"; mkdir -p "$out"
bench="${BENCH:-$here/../target/release/tidewater-bench}"
[ -x "$bench" ] || { echo "no tidewater-bench at $bench (cargo build --release, or set BENCH)" >&2; exit 1; }
dur="${DURATION:-10}"; warm="${WARMUP:-2}"; cpu="${BENCH_CPU:-}"; producers="${PRODUCERS:-1}"
consumers="${CONSUMERS:-4}"
prefix="${TOPIC_PREFIX:-m$RANDOM$RANDOM}"
pin=(); [ -n "$cpu" ] && pin=(taskset -c "$cpu")
read -r -a extra <<< "${BENCH_ARGS:-}"

: > "$out/rows.txt"
run() { # name, generator args...
  local name="$1"; shift
  echo "== $name" >&2
  echo "$name" >> "$out/rows.txt"
  rm -f "$out/$name.json" "$out/$name.rss"
  local sampler=""
  if [ -n "${BROKER_PID:-}" ]; then
    ( peak=0; while kill -0 "$BROKER_PID" 2>/dev/null; do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "$peak" ] && { peak=$r; echo "$peak" > "$out/$name.rss"; }
        sleep 0.2
      done ) &
    sampler=$!
  fi
  local ok=1
  "${pin[@]}" "$bench" "$@" --bootstrap "$bootstrap" --quiet "${extra[@]}" \
      --json "$out/$name.json" --timeseries "$out/$name.csv" > "$out/$name.txt" 2> "$out/$name.err" || ok=0
  [ -n "$sampler" ] && { kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; }
  if [ "$ok" = 0 ]; then
    echo "   FAILED (see $out/$name.err)" >&2; tail -3 "$out/$name.err" >&2; return 0
  fi
  python3 - "$out/$name.json" "$name" <<'PY' >&2
import json, sys
j = json.load(open(sys.argv[1])); l = j['latency_ms']
print(f"   {j['msgs_per_sec']:>12.0f} msg/s {j['mb_per_sec']:>9.1f} MB/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  p99.9 {l['p99_9']:.2f}  max {l['max']:.2f} ms  errors {j['errors']}")
PY
}
rate_of() { python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['msgs_per_sec']))" "$1" 2>/dev/null || echo 0; }

for size in 100 1024; do
  for parts in 1 16; do
    for acks in 1 all; do
      run "produce-acks$acks-${size}B-${parts}p" produce --topic "$prefix-$size-$parts" --partitions "$parts" \
        --message-size "$size" --acks "$acks" --producers "$producers" --duration "$dur" --warmup "$warm" \
        ${PRODUCE_RATE:+--rate "$PRODUCE_RATE"}
    done
  done
done
for size in 100 1024; do
  run "consume-${size}B-16p" consume --topic "$prefix-$size-16" --to-end --warmup 0 --duration "$((dur * 3))" \
    --consumers "$consumers"
done
for size in 100 1024; do
  max=$(rate_of "$out/produce-acksall-${size}B-16p.json")
  rate="${E2E_RATE:-$((max / 2))}"
  if [ "$rate" -gt 0 ]; then
    run "e2e-acksall-${size}B-16p-half" e2e --topic "$prefix-e2e-$size" --partitions 16 --message-size "$size" \
      --acks all --rate "$rate" --linger-ms "${E2E_LINGER:-5}" --producers "$producers" --consumers "$consumers" \
      --duration "$dur" --warmup "$warm"
  fi
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
for name in open(os.path.join(out, 'rows.txt')).read().split():
    p = os.path.join(out, name + '.json')
    if os.path.exists(p):  # failed rows have none
        rows[name] = json.load(open(p))
        rss = os.path.join(out, name + '.rss')
        if os.path.exists(rss):
            rows[name]['broker_rss_kib_max'] = int(open(rss).read().split()[0])
json.dump(rows, open(os.path.join(out, 'results.json'), 'w'), indent=1)
lines = ["| row | msg/s | MB/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | broker RSS MiB |",
         "|---|---|---|---|---|---|---|---|---|"]
for k, j in rows.items():
    l = j['latency_ms']
    lat = [f"{l[q]:.2f}" for q in ('p50', 'p99', 'p99_9', 'max')] if j['mode'] != 'consume' else ['-'] * 4
    rss = f"{j['broker_rss_kib_max'] / 1024:.0f}" if 'broker_rss_kib_max' in j else '-'
    lines.append(f"| {k} | {j['msgs_per_sec']:.0f} | {j['mb_per_sec']:.1f} | " + " | ".join(lat)
                 + f" | {j['errors']} | {rss} |")
open(os.path.join(out, 'summary.md'), 'w').write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

[ "${PLOTS:-1}" = 0 ] || "$here/plot.sh" "$out" || echo "plots skipped (see above)" >&2
echo "results: $out/results.json, $out/summary.md" >&2
