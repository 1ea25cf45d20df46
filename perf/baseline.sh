#!/usr/bin/env bash
# The machine's ceilings as JSON on stdout, to read broker figures against:
#   fio sequential O_DIRECT write and read, 1 MiB blocks (bytes/s, IOPS)
#   fio 4 KiB write + fdatasync after each write: fdatasync latency percentiles (µs) and rate
#   fio fdatasync latency under load: 64 KiB write + fdatasync at LOAD_MBPS in total, from one
#   stream and from 16 (16 files, as 16 partitions each syncing their own segment)
#   iperf3 over loopback (bytes/s, one stream)
# Installs fio and iperf3 with apt if missing (apt-get update once, then install).
# Usage: perf/baseline.sh [DIR] > baseline.json   (DIR: filesystem to test, default /tmp;
#        put it on the broker's data disk)
# Env: RUNTIME seconds per fio job (default 8), SIZE fio file size (default 2G),
#      IOENGINE (default io_uring, falling back to libaio, then psync), LOAD_MBPS (default 200)
set -euo pipefail
dir="${1:-/tmp}"; runtime="${RUNTIME:-8}"; size="${SIZE:-2G}"
need=()
command -v fio >/dev/null || need+=(fio)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2
fi
f="$dir/tidewater-baseline.$$"
streams_dir="$dir/tidewater-baseline-streams.$$"
ipid=""
cleanup() { rm -f "$f"; rm -rf "$streams_dir"; [ -n "$ipid" ] && kill "$ipid" 2>/dev/null; true; }
trap cleanup EXIT

engine="${IOENGINE:-}"
if [ -z "$engine" ]; then
  for e in io_uring libaio psync; do
    if fio --name=probe --filename="$f" --size=4M --direct=1 --ioengine="$e" --rw=write --bs=1M \
         --output-format=json >/dev/null 2>&1; then engine="$e"; break; fi
  done
fi
[ -n "$engine" ] || { echo "fio cannot do O_DIRECT I/O in $dir" >&2; exit 1; }
echo "fio engine $engine, file $f, ${runtime}s per job" >&2

fio_json() { fio --name=b --filename="$f" --size="$size" --direct=1 --runtime="$runtime" --time_based \
  --output-format=json "$@" 2>/dev/null; }
echo "sequential write..." >&2
seq_write=$(fio_json --ioengine="$engine" --rw=write --bs=1M --iodepth=8)
echo "sequential read..." >&2
seq_read=$(fio_json --ioengine="$engine" --rw=read --bs=1M --iodepth=8)
echo "4 KiB write + fdatasync..." >&2
sync_lat=$(fio_json --ioengine=psync --rw=write --bs=4k --fdatasync=1)
# The tail an acks=all producer meets under load: one stream, then the same total rate from 16
# streams syncing their own files (the device flushes of concurrent fdatasyncs interleave).
load_mbps="${LOAD_MBPS:-200}"
under_load() { # streams
  mkdir -p "$streams_dir"
  fio --name=b --directory="$streams_dir" --numjobs="$1" --group_reporting --size=256M --direct=1 \
    --ioengine=psync --rw=write --bs=64k --fdatasync=1 --rate="$((load_mbps / $1))m" \
    --runtime="$runtime" --time_based --output-format=json 2>/dev/null
  rm -rf "$streams_dir"
}
echo "fdatasync under load (${load_mbps} MB/s, 1 and 16 streams)..." >&2
load1=$(under_load 1)
load16=$(under_load 16)

echo "iperf3 loopback..." >&2
port=$((5201 + RANDOM % 500))
iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 & ipid=$!
sleep 0.5
loop=$(iperf3 -c 127.0.0.1 -p "$port" -t "${IPERF_TIME:-5}" -J 2>/dev/null || echo '{}')

python3 - "$seq_write" "$seq_read" "$sync_lat" "$loop" "$load1" "$load16" "$engine" "$dir" "$load_mbps" <<'PY'
import json, sys
sw, sr, sl, lo, l1, l16 = (json.loads(a) if a.strip() else {} for a in sys.argv[1:7])
engine, d, load_mbps = sys.argv[7], sys.argv[8], int(sys.argv[9])
def job(j): return j["jobs"][0]
def pct(lat):
    p = lat.get("percentile", {})
    pick = lambda k: p.get(k, 0) / 1000.0
    return {"p50": pick("50.000000"), "p90": pick("90.000000"), "p99": pick("99.000000"),
            "p99_9": pick("99.900000"), "p99_99": pick("99.990000"),
            "max": lat.get("max", 0) / 1000.0, "mean": lat.get("mean", 0) / 1000.0}
sync = job(sl)
out = {
    "dir": d, "fio_engine": engine,
    "seq_write_1m_bytes_per_sec": job(sw)["write"]["bw_bytes"],
    "seq_write_1m_iops": job(sw)["write"]["iops"],
    "seq_read_1m_bytes_per_sec": job(sr)["read"]["bw_bytes"],
    "seq_read_1m_iops": job(sr)["read"]["iops"],
    # fio reports the fdatasync calls under "sync" (lat_ns); the write itself under "write".
    "fdatasync_4k_latency_us": pct(sync.get("sync", {}).get("lat_ns", {})),
    "write_4k_latency_us": pct(sync["write"].get("clat_ns", {})),
    "fdatasync_4k_per_sec": sync["write"]["iops"],
    "loopback_bytes_per_sec": lo.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 8,
    "load_mbps": load_mbps,
}
for name, j in (("1", l1), ("16", l16)):
    if j.get("jobs"):
        out[f"fdatasync_under_load_{name}x64k_latency_us"] = pct(job(j).get("sync", {}).get("lat_ns", {}))
        out[f"fdatasync_under_load_{name}x64k_bytes_per_sec"] = job(j)["write"]["bw_bytes"]
print(json.dumps(out, indent=1))
PY
