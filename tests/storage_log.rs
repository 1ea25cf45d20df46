//! Storage engine tests on both backends: round trips, rolls, indexes, timestamps, retention,
//! truncation, reopen, a seeded crash simulation, and damage to real files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidewater::storage::batch::{set_base_offset, validate_batches};
use tidewater::storage::mem_io::{CrashMode, MemFs};
use tidewater::storage::{LogConfig, PartitionLog, StorageEnv, StorageError};

/// Runs `f` on a fresh glommio executor on this thread.
fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("executor");
    ex.run(f())
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// One RecordBatch v2 holding `values`, record i stamped `ts + i`.
fn batch(values: &[Vec<u8>], ts: i64) -> Bytes {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = vec![0u8]; // attributes
        put_varint(&mut r, i as i64); // timestamp delta
        put_varint(&mut r, i as i64); // offset delta
        put_varint(&mut r, -1); // null key
        put_varint(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        put_varint(&mut r, 0); // no headers
        put_varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let n = values.len() as i32;
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(ts + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max: segment_bytes,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Appends and waits for durability; returns the assigned base offset.
async fn append(log: &PartitionLog, b: &Bytes, now: i64) -> Result<i64, StorageError> {
    let headers = validate_batches(b, 1 << 20)?;
    Ok(log
        .append(b.clone(), &headers, now)?
        .durable()
        .await?
        .base_offset)
}

/// The bytes stored for `b` at `base`: identical but for the base offset.
fn stored(b: &Bytes, base: i64) -> Vec<u8> {
    let mut v = b.to_vec();
    set_base_offset(&mut v, 0, base);
    v
}

/// A short, comparable fingerprint of stored batches: (base offset, length, crc32c of bytes).
fn fp(batches: &[(i64, Vec<u8>)]) -> Vec<(i64, usize, u32)> {
    batches
        .iter()
        .map(|(b, v)| (*b, v.len(), crc32c::crc32c(v)))
        .collect()
}

/// Reads the whole log from `from` in small steps, returning (base offset, bytes) per batch.
async fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = log.read(next, 3000).await.expect("read");
        if r.chunks.is_empty() {
            return out;
        }
        for c in r.chunks {
            let h = validate_batches(&c, 1 << 20).expect("served bytes are valid batches")[0];
            if h.base_offset >= next || out.is_empty() {
                next = h.last_offset() + 1;
                out.push((h.base_offset, c.to_vec()));
            }
        }
    }
}

enum Backend {
    Mem(Rc<MemFs>),
    Dma(PathBuf),
}

impl Backend {
    async fn env(&self) -> StorageEnv {
        self.env_with_cache(1 << 14).await
    }

    async fn env_with_cache(&self, cache_bytes_max: usize) -> StorageEnv {
        match self {
            Backend::Mem(fs) => StorageEnv::memory(fs.clone(), cache_bytes_max),
            Backend::Dma(dir) => StorageEnv::dma(dir, cache_bytes_max)
                .await
                .expect("dma env"),
        }
    }
}

fn both_backends(test: impl Fn(Backend, PathBuf) + Copy) {
    test(Backend::Mem(MemFs::new()), PathBuf::from("/mem/t-0"));
    let tmp = tempfile::tempdir().expect("tempdir");
    test(
        Backend::Dma(tmp.path().to_path_buf()),
        tmp.path().join("t-0"),
    );
}

/// Large appends stage the producer's bytes without copying them: the caller's buffer (several
/// batches, each saying base offset 0, as producers send them) is never modified, yet every
/// reader gets the assigned offsets: from the cache (one copy, made by the first reader and then
/// shared; none at all for a batch whose bytes already say its offset), from disk, after
/// reopening, and under interval flushing before anything is written. Small appends are copied
/// at once (their receive buffer is shared with other requests).
#[test]
fn staged_batches_keep_the_producer_bytes_and_readers_see_assigned_offsets() {
    both_backends(|backend, dir| {
        run(|| async move {
            let env = backend.env_with_cache(4 << 20).await;
            let one = batch(&[vec![1u8; 300], vec![2u8; 200]], 10);
            let two = batch(&[vec![3u8; 70 << 10]], 20);
            let three = batch(&[vec![4u8; 50], vec![5u8; 60], vec![6u8; 70]], 30);
            let mut request = one.to_vec();
            request.extend_from_slice(&two);
            request.extend_from_slice(&three);
            let request = Bytes::from(request);
            let pristine = request.to_vec();
            let inside = |c: &Bytes| request.as_ptr_range().contains(&c.as_ptr());
            let headers = validate_batches(&request, 1 << 20).expect("valid");
            let log = PartitionLog::open(&env, &dir, config(1 << 30), 0)
                .await
                .expect("open");
            let mut expected = Vec::new();
            for _ in 0..2 {
                let a = log.append(request.clone(), &headers, 0).expect("append");
                let base = a.result.base_offset;
                a.durable().await.expect("durable");
                let mut at = base;
                for b in [&one, &two, &three] {
                    let h = validate_batches(b, 1 << 20).expect("valid")[0];
                    expected.push((at, stored(b, at)));
                    at += h.last_offset_delta as i64 + 1;
                }
            }
            assert_eq!(
                expected.last().map(|e| e.0),
                Some(9),
                "6 records per request"
            );
            assert_eq!(
                &request[..],
                &pristine[..],
                "the producer's bytes are untouched"
            );
            assert_eq!(
                env.cache_used_bytes(),
                2 * 2 * request.len(),
                "the producer's bytes keep their receive buffer alive: charged twice"
            );
            let first = log.read(0, 1 << 20).await.expect("read");
            assert_eq!(
                env.cache_used_bytes(),
                2 * request.len() + one.len(),
                "copies charge their length; the one batch served as sent is still charged twice"
            );
            let again = log.read(0, 1 << 20).await.expect("read");
            let got: Vec<(i64, Vec<u8>)> = first
                .chunks
                .iter()
                .map(|c| {
                    let h = validate_batches(c, 1 << 20).expect("valid")[0];
                    (h.base_offset, c.to_vec())
                })
                .collect();
            assert_eq!(got, expected, "cached batches carry their assigned offsets");
            assert!(
                inside(&first.chunks[0]),
                "a batch already saying its offset is served from the producer's bytes"
            );
            assert!(
                first.chunks[1..].iter().all(|c| !inside(c)),
                "the others are served from offset-carrying copies"
            );
            assert_eq!(
                first.chunks.iter().map(|c| c.as_ptr()).collect::<Vec<_>>(),
                again.chunks.iter().map(|c| c.as_ptr()).collect::<Vec<_>>(),
                "each copy is made once and shared by later readers"
            );
            assert_eq!(
                &request[..],
                &pristine[..],
                "reading leaves the producer's bytes too"
            );
            log.close().await.expect("close");
            let log = PartitionLog::open(&env, &dir, config(1 << 30), 0)
                .await
                .expect("reopen");
            assert_eq!(
                read_all(&log, 0).await,
                expected,
                "from disk after reopening"
            );
            log.remove().await.expect("remove");

            // Interval flushing: readable at once, from the cache, before any write.
            let cfg = LogConfig {
                flush_ms: Some(60_000),
                ..config(1 << 30)
            };
            let log = PartitionLog::open(&env, &dir, cfg, 0).await.expect("open");
            for _ in 0..2 {
                log.append(request.clone(), &headers, 0)
                    .expect("append")
                    .durable()
                    .await
                    .expect("acknowledged");
            }
            assert_eq!(
                read_all(&log, 0).await,
                expected,
                "unwritten, from the cache"
            );
            log.flush().await.expect("flush");
            log.close().await.expect("close");
            let log = PartitionLog::open(&env, &dir, LogConfig::default(), 0)
                .await
                .expect("reopen");
            assert_eq!(
                read_all(&log, 0).await,
                expected,
                "written by the interval flush"
            );
            assert_eq!(
                &request[..],
                &pristine[..],
                "the producer's bytes are untouched"
            );
            log.remove().await.expect("remove");

            // A small request is copied at once: the cache never holds its receive buffer.
            let small = batch(&[vec![7u8; 100]], 40);
            let log = PartitionLog::open(&env, &dir, config(1 << 30), 0)
                .await
                .expect("open");
            append(&log, &small, 0).await.expect("append");
            let r = log.read(0, 1 << 20).await.expect("read");
            assert_eq!(r.chunks.len(), 1);
            assert_eq!(&r.chunks[0][..], &stored(&small, 0)[..]);
            assert!(
                !small.as_ptr_range().contains(&r.chunks[0].as_ptr()),
                "small appends are copied"
            );
        })
    });
}

/// Small appends one at a time leave the zeroer room to run between them while the segment is
/// tiny, when its zero-ahead distance follows the segment's size: every zero write must still be
/// whole pages (the in-memory backend asserts it; the real disk refuses anything else).
#[test]
fn zeroing_ahead_of_small_appends_stays_page_aligned() {
    both_backends(|backend, dir| {
        run(|| async move {
            let env = backend.env().await;
            let log = PartitionLog::open(&env, &dir, config(1 << 30), 0)
                .await
                .expect("open");
            let mut kept = Vec::new();
            for i in 0..300i64 {
                let b = batch(&[vec![i as u8; 700 + (i as usize * 37) % 900]], i);
                let base = append(&log, &b, i).await.expect("append");
                kept.push((base, stored(&b, base)));
                if i % 7 == 0 {
                    // Idle for a moment: the zeroer runs now.
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            assert_eq!(fp(&read_all(&log, 0).await), fp(&kept));
            log.close().await.expect("close");
            let log = PartitionLog::open(&env, &dir, config(1 << 30), 0)
                .await
                .expect("reopen");
            assert_eq!(fp(&read_all(&log, 0).await), fp(&kept));
        })
    });
}

#[test]
fn round_trip_roll_reopen_and_index_lookups() {
    both_backends(|backend, dir| {
        let expected = run(|| async {
            let env = backend.env().await;
            let log = PartitionLog::open(&env, &dir, config(8192), 0)
                .await
                .expect("open");
            let mut expected = Vec::new();
            for i in 0..60 {
                let values: Vec<Vec<u8>> = (0..(i % 4 + 1))
                    .map(|j| vec![(i * 7 + j) as u8; 50 + i * 13])
                    .collect();
                let b = batch(&values, 1_000 + i as i64 * 10);
                let base = append(&log, &b, 0).await.expect("append");
                expected.push((base, stored(&b, base)));
            }
            assert!(log.segment_count() > 3, "small segments roll");
            assert_eq!(
                fp(&read_all(&log, 0).await),
                fp(&expected),
                "bit-exact round trip"
            );
            // A read from the middle of a batch returns the batch holding that offset.
            let (b5, bytes5) = &expected[5];
            let mid = log.read(b5 + 1, 1).await.expect("read");
            assert!(
                mid.chunks[0].to_vec() == *bytes5,
                "batch holding the offset"
            );
            // The first batch comes back whole even when larger than the limit.
            assert_eq!(log.read(0, 1).await.expect("read").chunks.len(), 1);
            log.close().await.expect("close");
            expected
        });
        // Reopen after a clean shutdown: same content, offsets continue.
        run(|| async {
            let env = backend.env().await;
            let log = PartitionLog::open(&env, &dir, config(8192), 0)
                .await
                .expect("reopen");
            assert_eq!(fp(&read_all(&log, 0).await), fp(&expected));
            let next = append(&log, &batch(&[b"after".to_vec()], 5), 0)
                .await
                .expect("append");
            assert_eq!(next, log.log_end_offset().get() - 1);
            assert_eq!(
                next,
                expected
                    .last()
                    .map(
                        |(b, v)| b + validate_batches(&Bytes::from(v.clone()), 1 << 20)
                            .expect("valid")[0]
                            .records_count as i64
                    )
                    .unwrap_or(0)
            );
        });
    });
}

#[test]
fn timestamps_retention_truncation_and_delete_records() {
    both_backends(|backend, dir| {
        run(|| async {
            let env = backend.env().await;
            let mut cfg = config(4096);
            cfg.retention_ms = 1_000;
            let log = PartitionLog::open(&env, &dir, cfg, 0).await.expect("open");
            for i in 0..40i64 {
                let vals: Vec<Vec<u8>> = (0..3).map(|j| vec![j as u8; 300]).collect();
                append(&log, &batch(&vals, 10_000 + i * 100), 0)
                    .await
                    .expect("append");
            }
            // Record-exact lookup: batch i holds offsets 3i..3i+2 with timestamps base+0..2.
            assert_eq!(
                log.offset_for_timestamp(10_000 + 5 * 100 + 1)
                    .await
                    .expect("ts"),
                Some((16, 10_501))
            );
            assert_eq!(
                log.offset_for_timestamp(0).await.expect("ts"),
                Some((0, 10_000))
            );
            assert_eq!(log.offset_for_timestamp(1_000_000).await.expect("ts"), None);
            assert_eq!(log.max_timestamp(), Some((10_000 + 39 * 100 + 2, 119)));
            // Retention by time: segments whose newest record is older than now - 1s go.
            let segments_before = log.segment_count();
            log.tick(10_000 + 20 * 100 + 1_000 + 500)
                .await
                .expect("tick");
            assert!(log.segment_count() < segments_before);
            let start = log.log_start_offset().get();
            // Batch i (offsets 3i..3i+2) has max timestamp 10_000 + 100i + 2: everything from
            // batch 25 on is younger than now - retention and must stay.
            assert!(start > 0 && start <= 75, "log start {start}");
            assert!(matches!(
                log.read(0, 100).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            assert_eq!(
                read_all(&log, start)
                    .await
                    .first()
                    .map(|(b, _)| *b <= start),
                Some(true)
            );
            // DeleteRecords moves the start forward.
            let s = log.delete_records_before(90).await.expect("delete records");
            assert_eq!(s.get(), 90);
            // Truncation drops the tail; new appends reuse the offsets after it.
            log.truncate_to(105).await.expect("truncate");
            assert_eq!(log.log_end_offset().get(), 105);
            assert_eq!(log.high_watermark().get(), 105);
            // Inside a batch (offsets 99..101): that whole batch goes.
            log.truncate_to(100).await.expect("truncate");
            assert_eq!(log.log_end_offset().get(), 99);
            assert_eq!(
                log.max_timestamp().map(|t| t.0),
                Some(10_000 + 32 * 100 + 2)
            );
            let next = append(&log, &batch(&[b"x".to_vec()], 99_999), 0)
                .await
                .expect("append");
            assert_eq!(next, 99);
            log.close().await.expect("close");
        });
        run(|| async {
            let env = backend.env().await;
            let log = PartitionLog::open(&env, &dir, config(4096), 0)
                .await
                .expect("reopen");
            assert_eq!(log.log_start_offset().get(), 90);
            assert_eq!(log.log_end_offset().get(), 100);
        });
    });
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    both_backends(|backend, dir| {
        run(|| async {
            let env = backend.env().await;
            let mut cfg = config(4096);
            cfg.retention_ms = -1;
            cfg.retention_bytes = 10_000;
            let log = PartitionLog::open(&env, &dir, cfg, 0).await.expect("open");
            for i in 0..60i64 {
                append(&log, &batch(&[vec![1u8; 900]], i), 0)
                    .await
                    .expect("append");
            }
            log.tick(1).await.expect("tick");
            let kept = read_all(&log, log.log_start_offset().get()).await;
            let bytes: usize = kept.iter().map(|(_, v)| v.len()).sum();
            assert!(
                (10_000 - 4096..=10_000 + 4096).contains(&bytes),
                "kept {bytes} bytes"
            );
            assert_eq!(kept.last().map(|(b, _)| *b), Some(59));
        });
    });
}

/// Retention hands deleted segment files to new segments, whose stale batches lie right past
/// the new data. With 1 KiB batches the new data ends on a page boundary (no zero padding after
/// it) where a stale batch starts, so only the offset check stands between a crash and serving
/// it: after the crash the log must end exactly where the acknowledged data does.
#[test]
fn recycled_segment_files_never_resurrect_stale_batches() {
    both_backends(|backend, dir| {
        run(|| async {
            let env = backend.env().await;
            // 954 value bytes make a 1,024-byte batch: four fill a page exactly.
            let len = batch(&[vec![0u8; 954]], 0).len() as u64;
            assert_eq!(len, 1024);
            let mut cfg = config(8 * len);
            cfg.retention_ms = -1;
            cfg.retention_bytes = (16 * len) as i64;
            cfg.recycled_segments_max = 1;
            let log = PartitionLog::open(&env, &dir, cfg.clone(), 0)
                .await
                .expect("open");
            let mut expected = BTreeMap::new();
            for i in 0..44i64 {
                let b = batch(&[vec![i as u8; 954]], i);
                let at = append(&log, &b, 0).await.expect("append");
                assert_eq!(at, i);
                expected.insert(at, stored(&b, at));
                log.tick(1).await.expect("tick");
                assert!(log.recycled_segment_files() <= 1, "the pool is bounded");
            }
            // Segments 24, 32 and 40 took the files retention retired from 0, 8 and 16.
            assert_eq!(
                log.segments_reused(),
                3,
                "new segments reused retired files"
            );
            let active = dir.join(format!("{:020}.log", 40));
            let file_len = match &backend {
                Backend::Mem(fs) => fs.file_bytes(&active).expect("active file").len() as u64,
                Backend::Dma(_) => std::fs::metadata(&active).expect("active file").len(),
            };
            assert!(
                file_len >= 8 * len,
                "the active segment's file still holds a whole old segment ({file_len} bytes)"
            );
            let start = log.log_start_offset().get();
            log.flush().await.expect("flush");
            // A crash: no clean close (the in-memory disk keeps only what was synced).
            drop(log);
            if let Backend::Mem(fs) = &backend {
                fs.crash(CrashMode::Drop, &mut StdRng::seed_from_u64(7));
            }
            let env = backend.env().await;
            let log = PartitionLog::open(&env, &dir, cfg, 0)
                .await
                .expect("reopen");
            assert_eq!(
                log.log_end_offset().get(),
                44,
                "the log ends where the data does"
            );
            assert_eq!(log.log_start_offset().get(), start);
            let served = read_all(&log, start).await;
            let want: Vec<(i64, Vec<u8>)> = expected
                .range(start..)
                .map(|(b, v)| (*b, v.clone()))
                .collect();
            assert_eq!(fp(&served), fp(&want), "exactly the acknowledged batches");
            let b = batch(&[b"next".to_vec()], 0);
            assert_eq!(
                append(&log, &b, 0).await.expect("append"),
                44,
                "no offset reuse"
            );
            log.close().await.expect("close");
        });
    });
}

fn seeds() -> Vec<u64> {
    match std::env::var("TIDEWATER_SEED") {
        Ok(s) => vec![s.parse().expect("TIDEWATER_SEED is a number")],
        Err(_) => (0..1000).collect(),
    }
}

/// Random appends, flushes, rolls and retention; a crash with the unsynced tail dropped, torn
/// or replaced by garbage; reopen; every acknowledged batch must be there, bit-exact.
#[test]
fn crash_simulation_loses_nothing_acknowledged() {
    let seeds = seeds();
    let mut reused = 0;
    for seed in &seeds {
        match std::panic::catch_unwind(|| crash_trial(*seed)) {
            Ok(n) => reused += n,
            Err(_) => {
                panic!("crash simulation failed for seed {seed}; replay with TIDEWATER_SEED={seed}")
            }
        }
    }
    if seeds.len() >= 1000 {
        // The runs must exercise recycled segment files (stale batches past the data).
        assert!(
            reused >= 100,
            "only {reused} segments reused a recycled file"
        );
    }
}

/// One seeded trial; returns how many new segments reused a recycled file before the crash.
fn crash_trial(seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let fs = MemFs::new();
    let dir = Path::new("/mem/crash-0");
    let seg_bytes = rng.gen_range(2_000..20_000u64);
    let ops = rng.gen_range(5..60);
    let interval = rng.gen_bool(0.2);
    let cfg = LogConfig {
        segment_bytes_max: seg_bytes,
        index_interval_bytes: rng.gen_range(100..4096),
        retention_ms: -1,
        retention_bytes: if rng.gen_bool(0.4) {
            rng.gen_range(5_000..40_000)
        } else {
            -1
        },
        // Interval flushing acknowledges at staging: only explicit flushes make bytes safe.
        flush_messages: interval.then(|| rng.gen_range(1..10)),
        // Often small enough that rounds take part of the queue (and stop at a segment).
        flush_round_bytes_max: if rng.gen_bool(0.5) {
            rng.gen_range(1..6_000)
        } else {
            8 << 20
        },
        // Zeroing ahead sometimes off, sometimes reaching past the segment end.
        zero_ahead_bytes: [0, 4096, 12_288, 1 << 20][rng.gen_range(0..4)],
        recycled_segments_max: rng.gen_range(0..3),
        ..LogConfig::default()
    };
    let sync_fault = rng.gen_bool(0.1);
    let op_seed: u64 = rng.gen();
    // One executor for both phases: handles from before the crash fail, like a dead process.
    run(|| async move {
        // Phase 1: work, then stop at an arbitrary point (pending appends are simply abandoned).
        let (acked, staged, reused) = {
            let fs = fs.clone();
            let cfg = cfg.clone();
            async move {
                let mut rng = StdRng::seed_from_u64(op_seed);
                let env = StorageEnv::memory(fs.clone(), rng.gen_range(0..8192));
                let log = PartitionLog::open(&env, dir, cfg, 0).await.expect("open");
                let mut acked: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
                let mut staged: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
                let mut pending = Vec::new();
                for op in 0..ops {
                    let n = rng.gen_range(1..4);
                    let vals: Vec<Vec<u8>> = (0..n)
                        .map(|_| vec![rng.gen(); rng.gen_range(0..1500)])
                        .collect();
                    let b = batch(&vals, op as i64);
                    let h = validate_batches(&b, 1 << 20).expect("valid");
                    if sync_fault && rng.gen_bool(0.05) {
                        fs.fail_next_sync.set(true);
                    }
                    let Ok(a) = log.append(b.clone(), &h, 0) else {
                        break;
                    };
                    staged.insert(a.result.base_offset, stored(&b, a.result.base_offset));
                    pending.push((a.result.base_offset, stored(&b, a.result.base_offset), a));
                    if rng.gen_bool(0.3) {
                        for (base, bytes, a) in pending.drain(..) {
                            if a.durable().await.is_ok() && !interval {
                                acked.insert(base, bytes);
                            }
                        }
                    }
                    if rng.gen_bool(0.15) {
                        let _ = log.tick(op as i64).await;
                    }
                    if rng.gen_bool(0.05) && log.flush().await.is_ok() {
                        acked.extend(pending.drain(..).map(|(b, v, _)| (b, v)));
                        acked.extend(staged.iter().map(|(b, v)| (*b, v.clone())));
                    }
                    if rng.gen_bool(0.03) {
                        let hw = log.high_watermark().get();
                        let start = log.log_start_offset().get();
                        let to = rng.gen_range(start..=hw);
                        log.delete_records_before(to).await.expect("delete records");
                    }
                    if rng.gen_bool(0.1) {
                        // Everything below the high watermark is readable and bit-exact, even
                        // what the cache evicted and (under interval flushing) is not yet synced.
                        let start = log.log_start_offset().get();
                        let hw = log.high_watermark().get();
                        for (base, bytes) in read_all(&log, start).await {
                            assert!(
                                base < hw,
                                "nothing at or above the high watermark is served"
                            );
                            assert!(staged.get(&base) == Some(&bytes), "served as staged");
                        }
                    }
                }
                (acked, staged, log.segments_reused())
            }
        }
        .await;
        let mode = [CrashMode::Drop, CrashMode::Torn, CrashMode::Garbage][rng.gen_range(0..3)];
        fs.crash(mode, &mut rng);
        // Phase 2: recover and check.
        {
            let fs = fs.clone();
            async move {
            let env = StorageEnv::memory(fs, 4096);
            let log = PartitionLog::open(&env, dir, cfg, 0)
                .await
                .expect("reopen after crash");
            let start = log.log_start_offset().get();
            let end = log.log_end_offset().get();
            let served = read_all(&log, start).await;
            let mut expect_next = None;
            for (base, bytes) in &served {
                if let Some(n) = expect_next {
                    assert_eq!(*base, n, "offsets continue without gaps");
                }
                assert!(
                    staged.get(base) == Some(bytes),
                    "only bytes that were written are served: at {base}, {} bytes served, {:?} staged",
                    bytes.len(),
                    staged.get(base).map(|v| v.len())
                );
                let h = validate_batches(&Bytes::from(bytes.clone()), 1 << 20).expect("valid");
                expect_next = Some(h[0].last_offset() + 1);
            }
            assert_eq!(
                expect_next.unwrap_or(start).max(start),
                end,
                "served up to the log end"
            );
            for (base, bytes) in acked.range(start..) {
                let got = served.iter().find(|(b, _)| b == base).map(|(_, v)| v);
                assert!(got == Some(bytes), "acknowledged batch at {base} survives");
            }
            let b = batch(&[b"next".to_vec()], 0);
            assert_eq!(
                append(&log, &b, 0).await.expect("append after recovery"),
                end,
                "no offset reuse"
            );
        }
        .await
        };
        reused
    })
}

/// Real files after a crash (no clean close): truncate and bit-flip the tail of the active
/// `.log`, delete a sealed segment's `.index`; reopen: everything before the damage, nothing after.
#[test]
fn damaged_real_files_are_truncated_at_the_first_bad_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("dmg-0");
    let written = run(|| async {
        let env = StorageEnv::dma(tmp.path(), 1 << 16).await.expect("env");
        let log = PartitionLog::open(&env, &dir, config(16_384), 0)
            .await
            .expect("open");
        let mut w = Vec::new();
        for i in 0..40 {
            let b = batch(&[vec![i as u8; 700], vec![i as u8; 300]], i);
            let base = append(&log, &b, 0).await.expect("append");
            w.push((base, stored(&b, base)));
        }
        // No close: the process "crashes" here, the active segment still preallocated.
        w
    });
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 2);
    let last = logs.last().expect("a segment").clone();
    let last_base: i64 = last
        .file_stem()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("segment name is its base offset");
    let data_len: usize = written
        .iter()
        .filter(|(b, _)| *b >= last_base)
        .map(|(_, v)| v.len())
        .sum();
    // Flip a bit in the last batch and cut a few bytes off: the last batch must go.
    let mut bytes = std::fs::read(&last).expect("read");
    assert!(bytes.len() >= data_len, "preallocated past the data");
    bytes[data_len - 20] ^= 0x10;
    bytes.truncate(data_len - 3);
    std::fs::write(&last, &bytes).expect("write");
    // A lost index of a sealed segment is rebuilt.
    std::fs::remove_file(logs[0].with_extension("index")).expect("remove index");
    let check = |expect: &[(i64, Vec<u8>)]| {
        run(|| async {
            let env = StorageEnv::dma(tmp.path(), 1 << 16).await.expect("env");
            let log = PartitionLog::open(&env, &dir, config(16_384), 0)
                .await
                .expect("reopen");
            let served = read_all(&log, 0).await;
            assert_eq!(
                fp(&served),
                fp(expect),
                "everything before the damage, nothing after"
            );
            let mid = expect[3].0 + 1;
            assert!(log.read(mid, 1).await.expect("read").chunks[0].to_vec() == expect[3].1);
            assert_eq!(
                log.offset_for_timestamp(5).await.expect("ts"),
                Some((expect[4].0 + 1, 5))
            );
            log.close().await.expect("close");
        })
    };
    check(&written[..written.len() - 1]);
    assert!(
        logs[0].with_extension("index").exists(),
        "index rebuilt and saved"
    );
    // A damaged metadata file costs a full scan, not data.
    std::fs::write(dir.join("partition.meta"), b"garbage").expect("meta");
    check(&written[..written.len() - 1]);
}

/// Bad input is rejected before anything is staged: bad CRC, bad magic, impossible lengths,
/// and a batch over `max.message.bytes`.
#[test]
fn bad_batches_are_rejected_and_nothing_is_written() {
    run(|| async {
        let fs = MemFs::new();
        let env = StorageEnv::memory(fs.clone(), 1 << 16);
        let dir = Path::new("/mem/bad-0");
        let mut cfg = config(1 << 20);
        cfg.max_message_bytes = 2_000;
        let log = PartitionLog::open(&env, dir, cfg, 0).await.expect("open");
        append(&log, &batch(&[b"ok".to_vec()], 1), 0)
            .await
            .expect("append");
        let good = batch(&[b"hello".to_vec(), b"world".to_vec()], 2).to_vec();
        let code = |b: Vec<u8>| {
            validate_batches(&Bytes::from(b), 1 << 20)
                .err()
                .map(|e| e.kafka_error_code())
        };
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 1;
        assert_eq!(code(bad_crc), Some(2), "CORRUPT_MESSAGE");
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        assert!(code(bad_magic).is_some_and(|c| c == 2 || c == 87));
        let mut too_long = good.clone();
        too_long[8..12].copy_from_slice(&(1i32 << 30).to_be_bytes());
        assert!(code(too_long).is_some_and(|c| c == 2 || c == 10 || c == 87));
        let mut too_short = good.clone();
        too_short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(code(too_short).is_some_and(|c| c == 2 || c == 87));
        assert!(code(good[..good.len() - 4].to_vec()).is_some());
        // Valid but larger than this log accepts.
        let big = batch(&[vec![9u8; 3_000]], 3);
        let h = validate_batches(&big, 1 << 20).expect("valid");
        assert!(matches!(
            log.append(big.clone(), &h, 0),
            Err(StorageError::MessageTooLarge(_))
        ));
        assert_eq!(log.log_end_offset().get(), 1, "nothing staged");
        log.flush().await.expect("flush");
        assert_eq!(read_all(&log, 0).await.len(), 1, "nothing written");
    });
}

/// Whole-segment scans, both ways of reading (8 MiB lookup reads; the sequential stream of
/// 1 MiB reads), with batches straddling read boundaries and one longer than two 8 MiB chunks,
/// on both backends, from the start and from a batch in the middle (not page-aligned): every
/// batch is seen once, in order, at its position, and the scan stops exactly at damage.
#[test]
fn scan_across_chunk_boundaries() {
    use tidewater::storage::segment::{scan, ScanReads};
    const CHUNK: usize = 8 << 20;
    both_backends(|backend, dir| {
        run(|| async {
            let env = backend.env().await;
            env.io.create_dir_all(&dir).expect("dir");
            let mut rng = StdRng::seed_from_u64(7);
            let mut data = Vec::new();
            let mut expect = Vec::new();
            let mut next = 0i64;
            while data.len() < 5 * CHUNK {
                // Mostly small batches, some large, one longer than two chunks.
                let len = match expect.len() {
                    40 => 2 * CHUNK + 12_345,
                    n if n % 7 == 0 => rng.gen_range(100_000..900_000),
                    _ => rng.gen_range(10..60_000),
                };
                let b = stored(&batch(&[vec![rng.gen(); len]], next), next);
                expect.push((data.len() as u64, next));
                next += 1;
                data.extend_from_slice(&b);
            }
            let good = data.len() as u64;
            // Damage after the good bytes: a batch with a broken CRC.
            let mut bad = stored(&batch(&[vec![1u8; 5000]], next), next);
            bad[100] ^= 0xff;
            data.extend_from_slice(&bad);
            let file = env.io.open(&dir.join("scan.log")).await.expect("open");
            file.write_pages(0, &[&data]).await.expect("write");
            file.sync().await.expect("sync");
            let (mid_pos, mid_offset) = expect[3];
            assert_ne!(mid_pos % 4096, 0, "the middle start is not page-aligned");
            for reads in [ScanReads::Lookup(CHUNK), ScanReads::Sequential] {
                for (from_pos, from_offset) in [(0, 0), (mid_pos, mid_offset)] {
                    let mut seen = Vec::new();
                    let outcome = scan(
                        &*file,
                        from_pos,
                        data.len() as u64,
                        from_offset,
                        64 << 20,
                        reads,
                        &mut |h, bytes| {
                            assert_eq!(
                                bytes.len(),
                                h.size_bytes,
                                "the callback gets the whole batch"
                            );
                            assert_eq!(
                                &bytes[..],
                                &data[h.position..h.position + h.size_bytes],
                                "the batch's own bytes"
                            );
                            seen.push((h.position as u64, h.base_offset));
                            true
                        },
                    )
                    .await
                    .expect("scan");
                    let want: Vec<_> = expect.iter().filter(|e| e.0 >= from_pos).copied().collect();
                    assert_eq!(
                        seen, want,
                        "{reads:?} from {from_pos}: every batch once, in order"
                    );
                    assert_eq!(outcome.valid_bytes, good);
                    assert_eq!(outcome.next_offset, next);
                    assert!(outcome.stopped.is_some(), "stops at the damaged batch");
                    // Cut short: the file ends inside the last good batch.
                    let cut = good - 1000;
                    let outcome = scan(
                        &*file,
                        from_pos,
                        cut,
                        from_offset,
                        64 << 20,
                        reads,
                        &mut |_, _| true,
                    )
                    .await
                    .expect("scan");
                    assert_eq!(outcome.valid_bytes, expect.last().map(|e| e.0).unwrap_or(0));
                    assert!(
                        outcome.stopped.is_some(),
                        "a truncated batch stops the scan"
                    );
                }
            }
        });
    });
}
