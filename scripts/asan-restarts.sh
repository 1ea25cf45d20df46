#!/usr/bin/env bash
# On demand: the broker built with AddressSanitizer (nightly), started and stopped in a loop
# (kcat produce every third start; kill -9 or SIGTERM alternately). Exits 1 on any ASan report
# or panic. This is how the start-up heap-use-after-free in glommio's MeshBuilder was found
# (start 47 of the first loop); the shard mesh of src/shard/mesh.rs ran 600 starts clean.
# Usage: scripts/asan-restarts.sh [STARTS]   (default 300; build ~5 min on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-300}"; work="${ASAN_WORK:-/tmp/tidewater-asan}"; port="${ASAN_PORT:-19555}"
mkdir -p "$work/data"
(cd "$root" && RUSTFLAGS="-Zsanitizer=address" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
  cargo +nightly build --release --target x86_64-unknown-linux-gnu --target-dir "$work/target" \
  --bin tidewater)
bin="$work/target/x86_64-unknown-linux-gnu/release/tidewater"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
found=0
for i in $(seq 1 "$n"); do
  log="$work/run.$i.log"
  "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --cores 2 > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  if [ $((i % 3)) = 0 ] && command -v kcat >/dev/null; then
    seq 1 2000 | kcat -P -b "127.0.0.1:$port" -t "t$((i % 5))" -X topic.partitioner=random 2>/dev/null || true
  fi
  if [ $((i % 2)) = 0 ]; then kill -9 "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  if grep -q "AddressSanitizer\|panicked\|malloc()" "$log"; then
    echo "start $i: see $log"; found=1
  else
    rm -f "$log"
  fi
done
echo "$n starts, $( [ $found = 0 ] && echo clean || echo 'FINDINGS above')"
exit $found
