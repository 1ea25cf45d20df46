#!/usr/bin/env bash
# Disk ceilings the storage engine is measured against, as JSON on stdout:
#  - sequential O_DIRECT write, 1 MiB blocks (iodepth 4), with and without fdatasync per 1 MiB
#  - the same write into a freshly preallocated file (unwritten extents), one pass: the regime an
#    append-only log lives in (on ext4 such writes cannot be issued without blocking, so
#    io_uring hands them to its workers, which appear to run writes to one file one at a time)
#  - sequential O_DIRECT read, 1 MiB blocks, iodepth 8 (the recovery-scan ceiling)
#  - 4 KiB write + fdatasync latency percentiles (the append-to-durable floor)
# Usage: perf/fio-baseline.sh [DIR] > perf/results/fio-baseline.json   (DIR default: /tmp)
# RUNTIME (seconds per job, default 6), SIZE (test file, default 2G).
set -euo pipefail
dir="${1:-/tmp}"
if ! command -v fio >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq fio) >/dev/null
fi
f="$dir/tidewater-fio.$$"
trap 'rm -f "$f" "$f.fresh"' EXIT
run() {
  fio --name=b --filename="$f" --size="${SIZE:-2G}" --direct=1 --ioengine=io_uring \
    --runtime="${RUNTIME:-6}" --time_based --output-format=json "$@" 2>/dev/null
}
py() { python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; $1"; }
bw() { py "print(j['$1']['bw_bytes'])"; }
pct() { # percentiles of a latency block, in µs
  py "l=j['$1']['lat_ns']['percentile']; print(json.dumps({k: round(l[v]/1000, 1) for k, v in (('p50','50.000000'),('p99','99.000000'),('p99_9','99.900000'))}))"
}
# Lay the file out first so the write jobs measure steady state, not allocation.
run --rw=write --bs=1M --iodepth=4 --runtime=1 >/dev/null
seq_write=$(run --rw=write --bs=1M --iodepth=4 | bw write)
seq_write_fdatasync=$(run --rw=write --bs=1M --iodepth=1 --fdatasync=1 | bw write)
rm -f "$f.fresh"; fallocate -l "${SIZE:-2G}" "$f.fresh"
seq_write_fresh=$(fio --name=b --filename="$f.fresh" --size="${SIZE:-2G}" --direct=1 --ioengine=io_uring \
  --fallocate=none --rw=write --bs=1M --iodepth=4 --output-format=json 2>/dev/null | bw write)
rm -f "$f.fresh"
seq_read=$(run --rw=read --bs=1M --iodepth=8 | bw read)
sync_lat=$(run --rw=write --bs=4k --iodepth=1 --fdatasync=1 --ioengine=sync | pct sync)
cat <<JSON
{"seq_write_1mib_bytes_per_sec": $seq_write,
 "seq_write_1mib_fresh_preallocated_bytes_per_sec": $seq_write_fresh,
 "seq_write_1mib_fdatasync_each_bytes_per_sec": $seq_write_fdatasync,
 "seq_read_1mib_iodepth8_bytes_per_sec": $seq_read,
 "fdatasync_4k_latency_us": $sync_lat}
JSON
