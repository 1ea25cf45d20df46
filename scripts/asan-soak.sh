#!/usr/bin/env bash
# On demand: a two-shard broker built with AddressSanitizer (nightly) under cross-shard load, to
# catch memory errors across shards such as the double free once seen in glommio's foreign-wake
# path (ARCHITECTURE.md, "No waker crosses threads").
# Rounds of: 1-partition 100 B produce (acks 1, then all: every request from a connection on the
# other shard hops across), 16-partition 1 KiB acks=all produce, 100 B e2e with 4 consumers.
# Exits 1 on an ASan report or if the broker dies.
# Usage: scripts/asan-soak.sh [ROUNDS]   (default 5; build ~5 min on 2 cores, ~40 s a round)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-5}"; work="${ASAN_WORK:-/tmp/tidewater-asan-soak}"; port="${ASAN_PORT:-19556}"
(cd "$root" && RUSTFLAGS="-Zsanitizer=address" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
  cargo +nightly build --release --target x86_64-unknown-linux-gnu --target-dir "$work/target" \
  --bin tidewater)
(cd "$root" && cargo build --release --bin tidewater-bench)
bin="$work/target/x86_64-unknown-linux-gnu/release/tidewater"
bench="$root/target/release/tidewater-bench"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
rm -rf "$work/data"; mkdir -p "$work/data"
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --cores 2 > "$work/broker.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work/data"' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
b=(--bootstrap "127.0.0.1:$port" --duration 6 --warmup 1 --quiet)
for r in $(seq 1 "$rounds"); do
  for acks in 1 all; do
    "$bench" produce "${b[@]}" --topic "one$r$acks" --partitions 1 --message-size 100 --acks "$acks" >/dev/null 2>&1 || true
  done
  "$bench" produce "${b[@]}" --topic "many$r" --partitions 16 --message-size 1024 --acks all >/dev/null 2>&1 || true
  "$bench" e2e "${b[@]}" --topic "e2e$r" --partitions 16 --message-size 100 --acks all --rate 200000 \
    --consumers 4 >/dev/null 2>&1 || true
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "round $r: the broker died; log: $work/broker.log"; trap - EXIT; exit 1
  fi
  echo "round $r clean"
done
if grep -q "AddressSanitizer" "$work/broker.log"; then
  echo "ASan report in $work/broker.log"; exit 1
fi
echo "$rounds rounds, clean"
