#!/usr/bin/env bash
# Machine ceilings as JSON: fio sequential O_DIRECT write/read (1 MiB), write with fdatasync
# every 2 MiB, 4 KiB write+fdatasync latency percentiles, and iperf3 loopback.
# Usage: perf/baseline.sh [DIR] > baseline.json   (DIR: where the test file goes, default /tmp)
set -euo pipefail
dir="${1:-/tmp}"
need=()
command -v fio >/dev/null || need+=(fio)
command -v iperf3 >/dev/null || need+=(iperf3)
if ((${#need[@]})); then
  (apt-get install -y -qq "${need[@]}" || (apt-get update -qq && apt-get install -y -qq "${need[@]}")) >/dev/null
fi
f="$dir/tidewater-fio.$$"
trap 'rm -f "$f"; kill %1 2>/dev/null || true' EXIT
fio_json() { fio --name=b --filename="$f" --size=2G --direct=1 --ioengine=io_uring --runtime="${RUNTIME:-8}" --time_based --output-format=json "$@" 2>/dev/null; }
bw() { python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['$1']['bw_bytes'])"; }
seq_write=$(fio_json --rw=write --bs=1M --iodepth=4 | bw write)
seq_write_sync=$(fio_json --rw=write --bs=1M --iodepth=4 --fdatasync=2 | bw write)
seq_read=$(fio_json --rw=read --bs=1M --iodepth=4 | bw read)
sync_lat=$(fio_json --rw=write --bs=4k --iodepth=1 --fdatasync=1 --ioengine=sync | python3 -c "
import json,sys; j=json.load(sys.stdin)['jobs'][0]['sync']['lat_ns']['percentile']
print(json.dumps({k: j[v]/1000 for k, v in (('p50','50.000000'),('p99','99.000000'),('p99_9','99.900000'))}))")
iperf3 -s -1 -B 127.0.0.1 -p 5299 >/dev/null 2>&1 &
sleep 0.5
loopback=$(iperf3 -c 127.0.0.1 -p 5299 -t "${RUNTIME:-5}" -J | python3 -c "import json,sys; print(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/8)")
cat <<JSON
{"seq_write_bytes_per_sec": $seq_write, "seq_write_fdatasync_2mib_bytes_per_sec": $seq_write_sync,
 "seq_read_bytes_per_sec": $seq_read, "fdatasync_4k_latency_us": $sync_lat,
 "loopback_bytes_per_sec": $loopback}
JSON
