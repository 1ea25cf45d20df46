//! Storage engine on the real disk: durable append (group commit) at several batch sizes, with
//! and without fdatasync, into a new log and in steady state under retention (recycled
//! segment files), recovery scan speed, and reads from the cache vs from disk.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use tidewater::storage::batch::validate_batches;
use tidewater::storage::{LogConfig, PartitionLog, StorageEnv};

fn run<F: std::future::Future<Output = T>, T>(f: impl FnOnce() -> F) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("executor")
        .run(f())
}

/// One valid RecordBatch v2 of `size` bytes (a single record).
fn batch(size: usize) -> Bytes {
    let value_len = size.saturating_sub(61 + 12).max(1);
    let mut rec = vec![0u8, 0, 0, 1]; // attributes, ts delta 0, offset delta 0, key null (-1)
    let mut v = (value_len as i64) << 1;
    while v >= 0x80 {
        rec.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    rec.push(v as u8);
    rec.extend(std::iter::repeat_n(7u8, value_len));
    rec.push(0);
    let mut records = Vec::new();
    let mut l = (rec.len() as i64) << 1;
    while l >= 0x80 {
        records.push((l as u8 & 0x7f) | 0x80);
        l >>= 7;
    }
    records.push(l as u8);
    records.extend_from_slice(&rec);
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A number from the environment (the knobs for A/B runs), if set.
fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Defaults, except for A/B runs: `TIDEWATER_BENCH_ZERO_AHEAD_BYTES`,
/// `TIDEWATER_BENCH_FLUSH_ROUND_BYTES` (steady-state runs also read
/// `TIDEWATER_BENCH_RECYCLED_SEGMENTS` and `TIDEWATER_BENCH_STEADY_SEGMENT_BYTES`).
fn base_config() -> LogConfig {
    let mut c = LogConfig::default();
    if let Some(v) = env_num("TIDEWATER_BENCH_ZERO_AHEAD_BYTES") {
        c.zero_ahead_bytes = v;
    }
    if let Some(v) = env_num("TIDEWATER_BENCH_FLUSH_ROUND_BYTES") {
        c.flush_round_bytes_max = v;
    }
    c
}

/// Segment size of the steady-state runs (`recycle`), retention twice that: retention deletes
/// as much as is appended, and every new segment reuses a retired file. Large segments, as in
/// production (1 GiB by default), so sealing one (trim, sync, index files) costs little per
/// byte. `TIDEWATER_BENCH_STEADY_SEGMENT_BYTES` overrides it.
fn steady_segment_bytes() -> u64 {
    env_num("TIDEWATER_BENCH_STEADY_SEGMENT_BYTES").unwrap_or(256 << 20)
}
/// Segments appended before the clock starts in steady-state runs: retention and the pool are
/// full, and the active segment already reuses a file.
const STEADY_WARMUP_SEGMENTS: u64 = 5;
/// Segments appended under the clock at least: criterion, seeing each sample's untimed warm-up,
/// asks for few appends, so the time of this many is scaled down to its `n`.
const STEADY_TIMED_SEGMENTS_MIN: u64 = 4;
/// Retention runs (inline, as the shard's periodic task would) after this many bytes.
const STEADY_TICK_BYTES: u64 = 8 << 20;

/// Appends `iters` batches with `concurrency` appends in flight; returns the time taken.
/// `recycle`: a log in steady state under retention, whose new segments reuse retired files
/// (appends overwrite written blocks); otherwise a new log, appending into fresh blocks.
fn appends(
    dir: &Path,
    size: usize,
    iters: u64,
    concurrency: usize,
    durable: bool,
    recycle: bool,
) -> Duration {
    let dir = dir.to_path_buf();
    run(|| async move {
        let env = StorageEnv::dma(&dir, 64 << 20).await.expect("env");
        let mut cfg = LogConfig {
            flush_ms: if durable { None } else { Some(1000) },
            ..base_config()
        };
        if recycle {
            cfg.segment_bytes_max = steady_segment_bytes();
            cfg.retention_ms = -1;
            cfg.retention_bytes = 2 * steady_segment_bytes() as i64;
            cfg.recycled_segments_max = env_num("TIDEWATER_BENCH_RECYCLED_SEGMENTS").unwrap_or(1);
        }
        let cfg_recycled = cfg.recycled_segments_max;
        let log = PartitionLog::open(
            &env,
            &dir.join(format!("a-{}", rand::random::<u32>())),
            cfg,
            0,
        )
        .await
        .expect("open");
        let b = batch(size);
        let h = validate_batches(&b, 64 << 20).expect("valid");
        let tick_every = (STEADY_TICK_BYTES / size as u64).max(1);
        // A sliding window, as a producer with `concurrency` requests in flight: the next
        // append goes in as soon as the oldest is durable, so flush rounds never run dry.
        let mut pending: std::collections::VecDeque<tidewater::storage::Appended> =
            std::collections::VecDeque::with_capacity(concurrency);
        let (warmup, timed) = if recycle {
            let per_segment = steady_segment_bytes() / size as u64;
            (
                STEADY_WARMUP_SEGMENTS * per_segment,
                iters.max(STEADY_TIMED_SEGMENTS_MIN * per_segment),
            )
        } else {
            (0, iters)
        };
        let mut start = Instant::now();
        for i in 0..warmup + timed {
            if i == warmup {
                // The clock starts on an empty pipeline, as for a new log.
                for a in pending.drain(..) {
                    a.durable().await.expect("durable");
                }
                start = Instant::now();
            }
            if pending.len() == concurrency {
                if let Some(a) = pending.pop_front() {
                    a.durable().await.expect("durable");
                }
            }
            pending.push_back(log.append(b.clone(), &h, 0).expect("append"));
            if recycle && i % tick_every == 0 {
                log.tick(0).await.expect("retention");
            }
        }
        for a in pending.drain(..) {
            a.durable().await.expect("durable");
        }
        log.flush().await.expect("flush");
        let t = start.elapsed().mul_f64(iters as f64 / timed as f64);
        if recycle && cfg_recycled > 0 {
            assert!(
                log.segments_reused() > 0,
                "steady state reuses segment files"
            );
        }
        log.remove().await.expect("remove");
        t
    })
}

/// Append-to-durable latency of 1 KiB appends one at a time: (p50, p99, p99.9) in µs.
fn durable_latency_us(dir: &Path, iters: usize) -> (f64, f64, f64) {
    let dir = dir.to_path_buf();
    run(|| async move {
        let env = StorageEnv::dma(&dir, 64 << 20).await.expect("env");
        let log = PartitionLog::open(&env, &dir.join("lat-0"), base_config(), 0)
            .await
            .expect("open");
        let b = batch(1024);
        let h = validate_batches(&b, 64 << 20).expect("valid");
        let mut lat = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let a = log.append(b.clone(), &h, 0).expect("append");
            a.durable().await.expect("durable");
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        log.remove().await.expect("remove");
        lat.sort_by(f64::total_cmp);
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        (p(0.5), p(0.99), p(0.999))
    })
}

fn bench_append(c: &mut Criterion) {
    let tmp =
        tempfile::tempdir_in(std::env::var("TIDEWATER_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let (p50, p99, p999) = durable_latency_us(
        tmp.path(),
        env_num("TIDEWATER_BENCH_LATENCY_APPENDS").unwrap_or(3000),
    );
    println!("append-to-durable latency, 1 KiB one at a time: p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs");
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for size in [1024usize, 65536, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("durable_one_at_a_time", size),
            &size,
            |b, s| b.iter_custom(|n| appends(tmp.path(), *s, n, 1, true, false)),
        );
        g.bench_with_input(
            BenchmarkId::new("durable_group_commit_64_in_flight", size),
            &size,
            |b, s| b.iter_custom(|n| appends(tmp.path(), *s, n, 64, true, false)),
        );
        g.bench_with_input(
            BenchmarkId::new("durable_group_commit_64_in_flight_recycled", size),
            &size,
            |b, s| b.iter_custom(|n| appends(tmp.path(), *s, n, 64, true, true)),
        );
        g.bench_with_input(BenchmarkId::new("no_fdatasync", size), &size, |b, s| {
            b.iter_custom(|n| appends(tmp.path(), *s, n, 64, false, false))
        });
    }
    g.finish();
}

fn bench_recovery_and_reads(c: &mut Criterion) {
    let tmp =
        tempfile::tempdir_in(std::env::var("TIDEWATER_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let dir = tmp.path().join("r-0");
    let total_bytes: u64 = 256 << 20;
    let size = 64 << 10;
    run(|| {
        let (root, dir) = (tmp.path().to_path_buf(), dir.clone());
        async move {
            let env = StorageEnv::dma(&root, 64 << 20).await.expect("env");
            let log = PartitionLog::open(&env, &dir, LogConfig::default(), 0)
                .await
                .expect("open");
            let b = batch(size);
            let h = validate_batches(&b, 64 << 20).expect("valid");
            let mut pending = Vec::new();
            for _ in 0..total_bytes / size as u64 {
                pending.push(log.append(b.clone(), &h, 0).expect("append"));
            }
            for a in pending {
                a.durable().await.expect("durable");
            }
            log.close().await.expect("close");
        }
    });
    let meta = dir.join("partition.meta");
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(total_bytes));
    g.bench_function("scan_256MiB_after_crash", |b| {
        b.iter_custom(|n| {
            let mut t = Duration::ZERO;
            for _ in 0..n {
                // No metadata: nothing is trusted, every segment is scanned and CRC-checked.
                let _ = std::fs::remove_file(&meta);
                let (root, dir) = (tmp.path().to_path_buf(), dir.clone());
                t += run(|| async move {
                    let env = StorageEnv::dma(&root, 64 << 20).await.expect("env");
                    let start = Instant::now();
                    let log = PartitionLog::open(&env, &dir, LogConfig::default(), 0)
                        .await
                        .expect("open");
                    let t = start.elapsed();
                    log.close().await.expect("close");
                    t
                });
            }
            t
        })
    });
    g.finish();
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, cache, max_bytes) in [
        ("disk_1MiB", 0usize, 1usize << 20),
        ("cache_1MiB", 512 << 20, 1 << 20),
        // Index lookup + one small aligned read: the first batch at a scattered offset.
        ("disk_index_lookup_one_batch", 0, 1),
    ] {
        g.throughput(Throughput::Bytes(max_bytes.max(size) as u64));
        let (root, dir) = (tmp.path().to_path_buf(), dir.clone());
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let (root, dir) = (root.clone(), dir.clone());
                run(|| async move {
                    let env = StorageEnv::dma(&root, cache).await.expect("env");
                    let log = PartitionLog::open(&env, &dir, LogConfig::default(), 0)
                        .await
                        .expect("open");
                    if cache > 0 {
                        // Fill the cache the way a tailing reader sees it: recent appends.
                        let bb = batch(size);
                        let h = validate_batches(&bb, 64 << 20).expect("valid");
                        for _ in 0..32 {
                            log.append(bb.clone(), &h, 0)
                                .expect("append")
                                .durable()
                                .await
                                .expect("durable");
                        }
                    }
                    let from = if cache > 0 {
                        log.log_end_offset().get() - 16
                    } else {
                        0
                    };
                    let spread = if max_bytes == 1 {
                        log.log_end_offset().get() - 1
                    } else {
                        8
                    };
                    let start = Instant::now();
                    for i in 0..n {
                        let at = from + (i as i64).wrapping_mul(2_654_435_761) % spread;
                        let r = log.read(at, max_bytes).await.expect("read");
                        assert!(r.bytes > 0);
                    }
                    let t = start.elapsed();
                    log.close().await.expect("close");
                    t
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_append, bench_recovery_and_reads);
criterion_main!(benches);
