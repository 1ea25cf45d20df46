#!/usr/bin/env bash
# The standard workload matrix against BOOTSTRAP; one JSON per row plus results.json.
# Env: BENCH_CPU (taskset list for the generator), DURATION (s), BENCH (binary path).
# Usage: perf/run-matrix.sh BOOTSTRAP OUTDIR
set -euo pipefail
bootstrap="$1"; out="$2"; mkdir -p "$out"
bench="${BENCH:-$(dirname "$0")/../target/release/tidewater-bench}"
dur="${DURATION:-8}"; cpu="${BENCH_CPU:-}"
run() { local name="$1"; shift
  if [ -n "$cpu" ]; then taskset -c "$cpu" "$bench" "$@" --bootstrap "$bootstrap" --duration "$dur" --warmup 2 --json "$out/$name.json" >/dev/null 2>&1
  else "$bench" "$@" --bootstrap "$bootstrap" --duration "$dur" --warmup 2 --json "$out/$name.json" >/dev/null 2>&1; fi
  python3 -c "import json; j=json.load(open('$out/$name.json')); print(f\"$name: {j['msgs_per_sec']:.0f} msg/s {j['mb_per_sec']:.1f} MB/s p99 {j['latency_ms']['p99']:.2f} ms\")"
}
tag=$RANDOM
for acks in 1 all; do for size in 100 1024; do for parts in 1 16; do
  run "produce-acks$acks-${size}B-${parts}p" produce --topic "m$tag-$size-$parts" --partitions "$parts" --message-size "$size" --acks "$acks" --max-in-flight 32
done; done; done
run consume-1024B-16p consume --topic "m$tag-1024-16"
max=$(python3 -c "import json; print(int(json.load(open('$out/produce-acksall-1024B-1p.json'))['msgs_per_sec']))")
run e2e-1024B-half-rate e2e --topic "e$tag" --partitions 1 --message-size 1024 --rate $((max / 2))
python3 - "$out" <<'PY'
import glob, json, os, sys
rows = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))) if not p.endswith('results.json')}
json.dump(rows, open(os.path.join(sys.argv[1], 'results.json'), 'w'), indent=1)
PY
