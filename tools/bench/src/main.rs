//! tidewater-bench: a load generator for any Kafka-compatible broker (Tidewater, Kafka,
//! Redpanda). Modes: produce, consume, e2e (end-to-end latency from a send timestamp carried in
//! each message). Open loop with `--rate` (latency measured from each message's *scheduled*
//! send time, so coordinated omission cannot hide stalls) or closed loop as fast as the broker
//! acknowledges.

#[cfg(test)]
mod fake;
mod gen;
mod precise;
mod proto;
mod stats;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use gen::{GenConfig, Generator, Keys, PartCount, Schedule, STAMP};
use proto::{decode_response, read_frame, Conn, TopicLayout, Versions};
use stats::{Lat, LocalHist, Report, Stats};

/// How long after the end acknowledgements are still awaited.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    Produce,
    Consume,
    E2e,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tidewater-bench",
    version,
    about = "Load generator for Kafka-compatible brokers (Tidewater, Kafka, Redpanda)"
)]
struct Args {
    /// produce, consume, or e2e (both at once, end-to-end latency).
    #[arg(value_enum)]
    mode: Mode,
    /// Broker(s) to bootstrap from, HOST:PORT[,HOST:PORT...]; partition leaders are found
    /// through Metadata and connected to directly.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Create the topic with this many partitions if it is missing (dry run: partitions).
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor for a created topic (-1: broker default).
    #[arg(long, default_value_t = -1)]
    replication_factor: i16,
    /// Producer connections (tasks); each opens one connection per partition leader it needs.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections; partitions are dealt out round robin.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Value size in bytes: fixed `100` or uniform range `100-1000`.
    #[arg(long, default_value = "1024")]
    message_size: String,
    /// none, random, or N (keys drawn from a space of N; Kafka's murmur2 picks the partition).
    #[arg(long, default_value = "none")]
    keys: String,
    /// Target bytes of values per partition batch.
    #[arg(long, default_value_t = 65536)]
    batch_bytes: usize,
    /// Upper bound on the values in one produce request.
    #[arg(long, default_value_t = 1 << 20)]
    request_bytes: usize,
    /// Open loop: how long due messages may wait for more before a short request is sent.
    #[arg(long, default_value_t = 1.0)]
    linger_ms: f64,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Messages per second across all producers (open loop); 0 = unlimited (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Produce requests in flight per connection (responses come back in order).
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<String>,
    /// Write the per-second time series as CSV to this file.
    #[arg(long)]
    timeseries: Option<String>,
    /// Encode and frame produce requests without any broker: the generator's own ceiling.
    #[arg(long)]
    dry_run: bool,
    /// Tokio worker threads (default: CPUs, at most one per connection).
    #[arg(long)]
    threads: Option<usize>,
    /// Consume mode: start at the log end instead of the beginning.
    #[arg(long)]
    from_latest: bool,
    /// Consume mode: stop once every partition is read up to the log end offset it had at
    /// the start (or at --duration, whichever is first): drain throughput.
    #[arg(long)]
    to_end: bool,
    /// Fetch: bytes per partition per request.
    #[arg(long, default_value_t = 1 << 20)]
    fetch_bytes: i32,
    /// Fetch: how long the broker may wait for data.
    #[arg(long, default_value_t = 100)]
    fetch_wait_ms: i32,
    /// Produce request timeout given to the broker.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: i32,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

/// Options parsed and checked once.
struct Plan {
    args: Args,
    min_size: usize,
    max_size: usize,
    keys: Keys,
    compression: kafka_protocol::records::Compression,
    acks: i16,
    layout: TopicLayout,
    versions: Versions,
    stats: Arc<Stats>,
    /// Wall-clock ns at `stats.start`, to turn schedule offsets into payload timestamps.
    wall0: u64,
}

impl Plan {
    fn wall_ns(&self, at: Instant) -> u64 {
        if at >= self.stats.start {
            self.wall0 + (at - self.stats.start).as_nanos() as u64
        } else {
            self.wall0 - (self.stats.start - at).as_nanos() as u64
        }
    }
}

fn wall_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The generator's own responsiveness: a task on the same runtime as the producers and
/// consumers that wakes on a 1 ms grid and records how late each tick ran. A busy or
/// descheduled generator shows here, so its latency figures can be judged against it.
///
/// Ticks until the end of the run, or until `finished` (a `--to-end` consume can finish early:
/// the run must not wait out its whole duration for the probe).
async fn lag_probe(st: Arc<Stats>, finished: Arc<AtomicBool>) {
    const TICK: Duration = Duration::from_millis(1);
    let mut hist = LocalHist::new(Lat::Lag);
    let mut due = Instant::now() + TICK;
    while due < st.end && !finished.load(Ordering::Relaxed) {
        precise::sleep_until(due).await;
        let now = Instant::now();
        if st.in_window(due) {
            hist.record(micros(now - due), 1);
        }
        hist.maybe_merge(&st, now);
        // After a stall, tick again a millisecond from now rather than catching up.
        due = (due + TICK).max(now + TICK / 2);
    }
    hist.finish(&st);
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// When the messages of one produce request were sent (closed loop) or due (open loop).
enum Times {
    At(Instant),
    /// Schedule offsets (ns from the start) of each message.
    Due(Vec<u64>),
}

struct InFlight {
    correlation: i32,
    parts: Vec<PartCount>,
    times: Times,
    _permit: OwnedSemaphorePermit,
}

/// One pipelined producer connection: requests are written here, a reader task matches the
/// in-order responses to `InFlight` entries, and a semaphore bounds what is outstanding.
struct Pipe {
    writer: OwnedWriteHalf,
    correlation: i32,
    version: i16,
    permits: Arc<Semaphore>,
    tx: Option<mpsc::UnboundedSender<InFlight>>,
    reader: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Records latency of the messages of one request completed at `now`.
fn record_times(plan: &Plan, hist: &mut LocalHist, times: &Times, n: u64, now: Instant) {
    let st = &plan.stats;
    match times {
        Times::At(t) => {
            if st.in_window(*t) {
                hist.record(micros(now.saturating_duration_since(*t)), n);
            }
        }
        Times::Due(v) => {
            for &ns in v {
                let due = st.start + Duration::from_nanos(ns);
                if st.in_window(due) {
                    hist.record(micros(now.saturating_duration_since(due)), 1);
                }
            }
        }
    }
}

fn count_acked(plan: &Plan, now: Instant, messages: u64, bytes: u64) {
    if plan.args.mode == Mode::E2e {
        plan.stats.count_produced(now, messages, bytes);
    } else {
        plan.stats.count(now, messages, bytes);
    }
}

async fn ack_reader(
    mut r: BufReader<OwnedReadHalf>,
    mut rx: mpsc::UnboundedReceiver<InFlight>,
    version: i16,
    plan: Arc<Plan>,
) -> anyhow::Result<()> {
    let st = plan.stats.clone();
    let mut hist = LocalHist::new(Lat::Ack);
    let deadline = tokio::time::Instant::from_std(st.end + DRAIN);
    let mut reported = HashSet::new();
    while let Some(f) = rx.recv().await {
        let body = match tokio::time::timeout_at(deadline, read_frame(&mut r)).await {
            Ok(b) => b?,
            Err(_) => {
                // Unanswered at the deadline: count what is outstanding as errors.
                let mut lost: u64 = f.parts.iter().map(|p| p.messages as u64).sum();
                rx.close();
                while let Ok(f) = rx.try_recv() {
                    lost += f.parts.iter().map(|p| p.messages as u64).sum::<u64>();
                }
                eprintln!("{lost} messages unacknowledged {DRAIN:?} after the end");
                st.error(lost);
                break;
            }
        };
        let resp: ProduceResponse = decode_response(ApiKey::Produce, version, f.correlation, body)?;
        let now = Instant::now();
        let mut failed = HashSet::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    failed.insert(p.index);
                    if reported.insert(p.error_code) {
                        eprintln!(
                            "produce error {} on partition {} (first of its kind)",
                            p.error_code, p.index
                        );
                    }
                }
            }
        }
        let (mut ok, mut bytes, mut bad) = (0u64, 0u64, 0u64);
        for p in &f.parts {
            if failed.contains(&p.partition) {
                bad += p.messages as u64;
            } else {
                ok += p.messages as u64;
                bytes += p.bytes;
            }
        }
        if bad > 0 {
            st.error(bad);
        } else {
            record_times(&plan, &mut hist, &f.times, ok, now);
        }
        count_acked(&plan, now, ok, bytes);
        hist.maybe_merge(&st, now);
    }
    hist.finish(&st);
    Ok(())
}

async fn open_pipe(addr: &str, plan: &Arc<Plan>) -> anyhow::Result<Pipe> {
    let conn = Conn::connect(addr).await?;
    let version = conn.versions.produce;
    let permits = Arc::new(Semaphore::new(plan.args.max_in_flight.max(1)));
    let (tx, reader) = if plan.acks != 0 {
        let (tx, rx) = mpsc::unbounded_channel();
        let h = tokio::spawn(ack_reader(conn.reader, rx, version, plan.clone()));
        (Some(tx), Some(h))
    } else {
        (None, None)
    };
    Ok(Pipe {
        writer: conn.writer,
        correlation: conn.correlation,
        version,
        permits,
        tx,
        reader,
    })
}

/// Partitions producer `id` of `n` writes to without keys.
fn owned_partitions(id: usize, n: usize, partitions: i32) -> Vec<i32> {
    if n as i32 >= partitions {
        vec![(id as i32) % partitions]
    } else {
        (0..partitions).filter(|p| *p as usize % n == id).collect()
    }
}

struct Producer {
    plan: Arc<Plan>,
    gen: Generator,
    /// Pipes (one per distinct leader) and each partition's pipe; empty in a dry run.
    pipes: Vec<Pipe>,
    pipe_of: Vec<usize>,
    out: BytesMut,
}

async fn producer_setup(id: usize, plan: Arc<Plan>) -> anyhow::Result<Producer> {
    let a = &plan.args;
    let partitions = plan.layout.partitions();
    let own = owned_partitions(id, a.producers, partitions);
    let gen = Generator::new(GenConfig {
        min_size: plan.min_size,
        max_size: plan.max_size,
        keys: plan.keys,
        compression: plan.compression,
        batch_bytes: a.batch_bytes,
        partitions,
        own: own.clone(),
        topic: a.topic.clone(),
        seed: id as u64 + 1,
    });
    let mut pipes = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    let mut pipe_of = vec![usize::MAX; partitions as usize];
    if !a.dry_run {
        let targets: Vec<i32> = if plan.keys == Keys::None {
            own
        } else {
            (0..partitions).collect()
        };
        for p in targets {
            let addr = &plan.layout.leaders[p as usize];
            let i = match addrs.iter().position(|x| x == addr) {
                Some(i) => i,
                None => {
                    pipes.push(open_pipe(addr, &plan).await?);
                    addrs.push(addr.clone());
                    addrs.len() - 1
                }
            };
            pipe_of[p as usize] = i;
        }
    }
    Ok(Producer {
        plan,
        gen,
        pipes,
        pipe_of,
        out: BytesMut::with_capacity(2 << 20),
    })
}

impl Producer {
    async fn run(mut self) -> anyhow::Result<()> {
        let plan = self.plan.clone();
        let (a, st) = (&plan.args, &plan.stats);
        let avg = ((plan.min_size + plan.max_size) / 2).max(1);
        let max_msgs = (self.gen.per_batch() * self.gen.targets())
            .min(a.request_bytes / avg)
            .max(1);
        let schedule = (a.rate > 0.0).then(|| Schedule::new(a.rate / a.producers as f64));
        let linger = Duration::from_secs_f64(a.linger_ms.max(0.0) / 1000.0);
        let mut next: u64 = 0;
        let mut dry_hist = LocalHist::new(Lat::Ack);
        let mut seqs = Vec::new();
        loop {
            let now = Instant::now();
            if now >= st.end {
                break;
            }
            let n = match schedule {
                None => max_msgs,
                Some(s) => {
                    let elapsed = now.saturating_duration_since(st.start).as_nanos() as u64;
                    let due = s.due(elapsed).saturating_sub(next) as usize;
                    let oldest = st.start + Duration::from_nanos(s.at_ns(next));
                    if due == 0 {
                        precise::sleep_until(oldest).await;
                        continue;
                    }
                    if due < max_msgs && now < oldest + linger {
                        let full =
                            st.start + Duration::from_nanos(s.at_ns(next + max_msgs as u64 - 1));
                        let wake = (oldest + linger).min(full).min(st.end);
                        precise::sleep_until(wake).await;
                        continue;
                    }
                    due.min(max_msgs)
                }
            };
            // Payload stamps: the scheduled time (open loop) or now (closed loop).
            let first = next;
            let stamp_base = plan.wall_ns(now);
            let touched = match schedule {
                Some(s) => self
                    .gen
                    .generate(n, |i| plan.wall0 + s.at_ns(first + i as u64)),
                None => self.gen.generate(n, |_| stamp_base),
            };
            let touched: Vec<i32> = touched.to_vec();
            next += n as u64;
            let ts_ms = (wall_now_ns() / 1_000_000) as i64;
            if a.dry_run {
                self.out.clear();
                let counts = self.gen.encode_request(
                    |_| true,
                    None,
                    Versions::dry_run().produce,
                    0,
                    plan.acks,
                    a.timeout_ms,
                    ts_ms,
                    &mut self.out,
                )?;
                let done = Instant::now();
                let (m, b) = counts
                    .iter()
                    .fold((0, 0), |(m, b), c| (m + c.messages as u64, b + c.bytes));
                plan.stats.count(done, m, b);
                if st.in_window(now) {
                    // Dry run "latency": the time to build and encode the request.
                    dry_hist.record(micros(done - now), m);
                }
                dry_hist.maybe_merge(st, done);
                tokio::task::yield_now().await;
                continue;
            }
            let mut pipe_ids: Vec<usize> =
                touched.iter().map(|p| self.pipe_of[*p as usize]).collect();
            pipe_ids.sort_unstable();
            pipe_ids.dedup();
            for pi in pipe_ids {
                let pipe = &mut self.pipes[pi];
                let permit = pipe.permits.clone().acquire_owned().await?;
                let sent = Instant::now();
                pipe.correlation = pipe.correlation.wrapping_add(1);
                let corr = pipe.correlation;
                self.out.clear();
                seqs.clear();
                let pipe_of = &self.pipe_of;
                let counts = self.gen.encode_request(
                    |p| pipe_of[p as usize] == pi,
                    schedule.is_some().then_some(&mut seqs),
                    pipe.version,
                    corr,
                    plan.acks,
                    a.timeout_ms,
                    ts_ms,
                    &mut self.out,
                )?;
                let times = match schedule {
                    Some(s) => {
                        Times::Due(seqs.iter().map(|&i| s.at_ns(first + i as u64)).collect())
                    }
                    None => Times::At(sent),
                };
                if let Some(tx) = &pipe.tx {
                    // Queued before the write so the reader always knows what it reads.
                    tx.send(InFlight {
                        correlation: corr,
                        parts: counts.clone(),
                        times,
                        _permit: permit,
                    })
                    .map_err(|_| anyhow!("ack reader stopped"))?;
                    pipe.writer.write_all(&self.out).await?;
                } else {
                    // acks=0: no response; "latency" is until the request is written.
                    pipe.writer.write_all(&self.out).await?;
                    let done = Instant::now();
                    let (m, b) = counts
                        .iter()
                        .fold((0, 0), |(m, b), c| (m + c.messages as u64, b + c.bytes));
                    record_times(&plan, &mut dry_hist, &times, m, done);
                    count_acked(&plan, done, m, b);
                    dry_hist.maybe_merge(st, done);
                    drop(permit);
                }
            }
        }
        if let Some(s) = schedule {
            // Open loop: messages due before the end but never sent (the producer fell
            // behind) still count, as latency of at least end - due, and as `unsent`.
            let total =
                s.due((st.end.duration_since(st.start).as_nanos() as u64).saturating_sub(1));
            let end = Instant::now().max(st.end);
            // Those in the window, recorded in at most ~100k weighted steps.
            let before = st.measure_from.duration_since(st.start).as_nanos() as u64;
            let first_in = next.max(s.due(before.saturating_sub(1))).min(total);
            let unsent = total - first_in;
            let step = (unsent / 100_000).max(1);
            let mut i = first_in;
            while i < total {
                let n = step.min(total - i);
                let due = st.start + Duration::from_nanos(s.at_ns(i));
                dry_hist.record(micros(end.saturating_duration_since(due)), n);
                i += n;
            }
            st.unsent.fetch_add(unsent, Ordering::Relaxed);
        }
        dry_hist.finish(st);
        // Let the readers drain what is in flight, then close.
        let mut result = Ok(());
        for mut pipe in self.pipes.drain(..) {
            pipe.tx = None;
            if let Some(r) = pipe.reader.take() {
                match r.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(e) => result = Err(anyhow!("ack reader failed: {e}")),
                }
            }
            let _ = pipe.writer.shutdown().await;
        }
        result
    }
}

/// One consumer connection to one leader and the partitions it fetches there.
struct Fetcher {
    conn: Conn,
    /// (partition, next offset)
    offsets: Vec<(i32, i64)>,
    /// --to-end: the log end offsets at the start, in `offsets` order.
    ends: Option<Vec<i64>>,
}

fn reset_timestamp(plan: &Plan) -> i64 {
    if plan.args.mode == Mode::E2e || plan.args.from_latest {
        -1
    } else {
        -2
    }
}

async fn fetcher_setup(addr: &str, parts: Vec<i32>, plan: &Plan) -> anyhow::Result<Fetcher> {
    let mut conn = Conn::connect(addr).await?;
    let starts = conn
        .list_offsets(&plan.args.topic, &parts, reset_timestamp(plan))
        .await?;
    let offsets = parts
        .iter()
        .map(|p| (*p, starts.get(p).copied().unwrap_or(0)))
        .collect::<Vec<(i32, i64)>>();
    let ends = if plan.args.to_end {
        let e = conn.list_offsets(&plan.args.topic, &parts, -1).await?;
        Some(
            parts
                .iter()
                .map(|p| e.get(p).copied().unwrap_or(0))
                .collect(),
        )
    } else {
        None
    };
    Ok(Fetcher {
        conn,
        offsets,
        ends,
    })
}

impl Fetcher {
    async fn run(mut self, plan: Arc<Plan>) -> anyhow::Result<()> {
        let (a, st) = (&plan.args, &plan.stats);
        let e2e = a.mode == Mode::E2e;
        // E2e: keep reading a little after the end for messages sent just before it.
        let stop = if e2e {
            st.end + Duration::from_secs(1)
        } else {
            st.end
        };
        let version = self.conn.versions.fetch;
        let topic = TopicName(StrBytes::from_string(a.topic.clone()));
        let mut hist = LocalHist::new(Lat::E2e);
        while Instant::now() < stop {
            if let Some(ends) = &self.ends {
                if self.offsets.iter().zip(ends).all(|((_, o), e)| o >= e) {
                    break;
                }
            }
            let mut t = FetchTopic::default();
            t.topic = topic.clone();
            for (p, o) in &self.offsets {
                let mut fp = FetchPartition::default();
                fp.partition = *p;
                fp.fetch_offset = *o;
                fp.partition_max_bytes = a.fetch_bytes;
                t.partitions.push(fp);
            }
            let req = FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(a.fetch_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(64 << 20)
                .with_topics(vec![t]);
            let asked = Instant::now();
            let resp: FetchResponse = tokio::time::timeout(
                Duration::from_secs(30),
                self.conn.call(ApiKey::Fetch, version, &req),
            )
            .await
            .map_err(|_| anyhow!("fetch timed out"))??;
            let now = Instant::now();
            // The same monotonic clock the producers stamped with (mapped through `wall0`):
            // a wall-clock step during the run cannot shift the latencies.
            let wall = plan.wall_ns(now);
            let (mut msgs, mut bytes) = (0u64, 0u64);
            if resp.error_code != 0 {
                bail!("fetch failed with error {}", resp.error_code);
            }
            for tr in &resp.responses {
                for pr in &tr.partitions {
                    let Some(slot) = self
                        .offsets
                        .iter()
                        .position(|(p, _)| *p == pr.partition_index)
                    else {
                        continue;
                    };
                    if pr.error_code == proto::OFFSET_OUT_OF_RANGE {
                        let p = self.offsets[slot].0;
                        let fresh = self
                            .conn
                            .list_offsets(&a.topic, &[p], reset_timestamp(&plan))
                            .await?;
                        eprintln!(
                            "partition {p}: offset {} out of range, reset to {:?}",
                            self.offsets[slot].1,
                            fresh.get(&p)
                        );
                        self.offsets[slot].1 = fresh.get(&p).copied().unwrap_or(0);
                        continue;
                    }
                    if pr.error_code != 0 {
                        st.error(1);
                        continue;
                    }
                    let Some(records) = &pr.records else { continue };
                    let from = self.offsets[slot].1;
                    let mut next = from;
                    for batch in proto::complete_batches(records.clone()) {
                        let base = i64::from_be_bytes(batch[..8].try_into()?);
                        let last_delta = if batch.len() >= 27 {
                            i32::from_be_bytes(batch[23..27].try_into()?) as i64
                        } else {
                            0
                        };
                        next = next.max(base + last_delta + 1);
                        if base + last_delta < from {
                            continue;
                        }
                        let mut seen = |offset: i64, value: Option<&[u8]>| {
                            if offset < from {
                                return;
                            }
                            let v = value.unwrap_or(&[]);
                            msgs += 1;
                            bytes += v.len() as u64;
                            if e2e && v.len() >= STAMP {
                                let mut stamp = [0u8; STAMP];
                                stamp.copy_from_slice(&v[..STAMP]);
                                let sent = u64::from_be_bytes(stamp);
                                let due = st.start
                                    + Duration::from_nanos(sent.saturating_sub(plan.wall0));
                                if sent >= plan.wall0 && st.in_window(due) {
                                    hist.record(wall.saturating_sub(sent) / 1000, 1);
                                }
                            }
                        };
                        // Uncompressed batches are walked in place; compressed ones decoded.
                        if proto::is_compressed(&batch) {
                            let set = RecordBatchDecoder::decode(&mut batch.clone())
                                .with_context(|| format!("decoding a batch at offset {base}"))?;
                            for r in set.records.iter().filter(|r| !r.control) {
                                seen(r.offset, r.value.as_deref());
                            }
                        } else if proto::for_each_value(&batch, &mut seen).is_none() {
                            bail!("malformed record batch at offset {base}");
                        }
                    }
                    self.offsets[slot].1 = next;
                }
            }
            st.count(now, msgs, bytes);
            hist.maybe_merge(st, now);
            if msgs == 0 && now - asked < Duration::from_millis(1) {
                // A broker that answers empty fetches at once: do not spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        hist.finish(st);
        Ok(())
    }
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let (min_size, max_size) = gen::parse_sizes(&args.message_size)?;
    let keys = Keys::parse(&args.keys)?;
    let compression = gen::parse_compression(&args.compression)?;
    let acks = gen::parse_acks(&args.acks)?;
    if args.producers == 0 || args.consumers == 0 {
        bail!("--producers and --consumers must be at least 1");
    }
    if args.dry_run && args.mode == Mode::Consume {
        bail!("--dry-run measures the produce path; use it with produce or e2e");
    }
    let (layout, versions) = if args.dry_run {
        (
            TopicLayout::single("dry-run", args.partitions.unwrap_or(1)),
            Versions::dry_run(),
        )
    } else {
        proto::discover(
            &args.bootstrap,
            &args.topic,
            args.partitions,
            args.replication_factor,
        )
        .await?
    };
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    // The clock starts once every connection is open (set below); a placeholder until then.
    let mut plan = Plan {
        args: args.clone(),
        min_size,
        max_size,
        keys,
        compression,
        acks,
        layout,
        versions,
        stats: Arc::new(Stats::new(Instant::now(), warmup, duration)),
        wall0: 0,
    };
    // Connections first: consumers know their start offsets before anything is produced.
    let mut fetchers = Vec::new();
    if matches!(args.mode, Mode::Consume | Mode::E2e) && !args.dry_run {
        for c in 0..args.consumers {
            let mine: Vec<i32> = (0..plan.layout.partitions())
                .filter(|p| *p as usize % args.consumers == c)
                .collect();
            let mut leaders: Vec<&String> = mine
                .iter()
                .map(|p| &plan.layout.leaders[*p as usize])
                .collect();
            leaders.sort();
            leaders.dedup();
            for addr in leaders {
                let parts: Vec<i32> = mine
                    .iter()
                    .copied()
                    .filter(|p| &plan.layout.leaders[*p as usize] == addr)
                    .collect();
                fetchers.push(fetcher_setup(addr, parts, &plan).await?);
            }
        }
    }
    let start = Instant::now();
    plan.stats = Arc::new(Stats::new(start, warmup, duration));
    plan.wall0 = wall_now_ns();
    let plan = Arc::new(plan);
    let finished = Arc::new(AtomicBool::new(false));
    let lag =
        (!args.dry_run).then(|| tokio::spawn(lag_probe(plan.stats.clone(), finished.clone())));
    let mut producers = Vec::new();
    if matches!(args.mode, Mode::Produce | Mode::E2e) {
        for i in 0..args.producers {
            producers.push(producer_setup(i, plan.clone()).await?);
        }
    }
    let which = if args.mode == Mode::E2e {
        Lat::E2e
    } else {
        Lat::Ack
    };
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (st, d, q) = (plan.stats.clone(), done.clone(), args.quiet);
        std::thread::spawn(move || stats::progress(st, which, d, q))
    };
    let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    for f in fetchers {
        tasks.push(tokio::spawn(f.run(plan.clone())));
    }
    for p in producers {
        tasks.push(tokio::spawn(p.run()));
    }
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow!("task failed: {e}"))),
        }
    }
    finished.store(true, Ordering::Relaxed);
    if let Some(l) = lag {
        let _ = l.await;
    }
    done.store(true, Ordering::Relaxed);
    let timeseries = progress.join().unwrap_or_default();
    if let Some(e) = failure {
        return Err(e);
    }
    let st = &plan.stats;
    let seconds = duration
        .as_secs_f64()
        .min(start.elapsed().saturating_sub(warmup).as_secs_f64())
        .max(1e-9);
    let latency = match args.mode {
        Mode::Consume => None,
        _ => Some(st.snapshot(which)),
    };
    Ok(Report {
        mode: format!("{:?}", args.mode).to_lowercase(),
        messages: st.messages.load(Ordering::Relaxed),
        bytes: st.bytes.load(Ordering::Relaxed),
        messages_total: st.seen_messages.load(Ordering::Relaxed),
        bytes_total: st.seen_bytes.load(Ordering::Relaxed),
        seconds,
        errors: st.errors.load(Ordering::Relaxed),
        unsent: st.unsent.load(Ordering::Relaxed),
        latency,
        ack_latency: (args.mode == Mode::E2e).then(|| st.snapshot(Lat::Ack)),
        lag: (!args.dry_run).then(|| st.snapshot(Lat::Lag)),
        produced: (args.mode == Mode::E2e).then(|| {
            (
                st.produced.load(Ordering::Relaxed),
                st.produced_bytes.load(Ordering::Relaxed),
            )
        }),
        config: serde_json::json!({
            "bootstrap": args.bootstrap, "topic": args.topic,
            "partitions": plan.layout.partitions(),
            "leaders": plan.layout.leaders.iter().collect::<std::collections::BTreeSet<_>>(),
            "producers": args.producers, "consumers": args.consumers,
            "message_size": args.message_size, "keys": args.keys,
            "batch_bytes": args.batch_bytes, "request_bytes": args.request_bytes,
            "linger_ms": args.linger_ms, "acks": args.acks, "compression": args.compression,
            "rate": args.rate, "duration": args.duration, "warmup": args.warmup,
            "max_in_flight": args.max_in_flight, "dry_run": args.dry_run,
            "threads": args.threads, "from_latest": args.from_latest, "to_end": args.to_end,
        }),
        versions: plan.versions.json(),
        timeseries,
    })
}

fn default_threads(a: &Args) -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let conns = match a.mode {
        Mode::Produce => a.producers,
        Mode::Consume => a.consumers,
        Mode::E2e => a.producers + a.consumers,
    };
    cpus.min(conns).max(1)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| default_threads(&args))
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let report = rt.block_on(run(args.clone()))?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)
            .with_context(|| format!("writing {path}"))?;
    }
    if let Some(path) = &args.timeseries {
        std::fs::write(path, report.timeseries_csv()).with_context(|| format!("writing {path}"))?;
    }
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> anyhow::Result<Report> {
        let mut all = vec!["tidewater-bench"];
        all.extend_from_slice(args);
        let a = Args::try_parse_from(all)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(run(a))
    }

    #[test]
    fn dry_run_end_to_end_reports_throughput() {
        let r = run_args(&[
            "produce",
            "--dry-run",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--message-size",
            "100-200",
            "--keys",
            "50",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--quiet",
        ])
        .expect("dry run");
        assert!(r.messages > 1000, "{} messages", r.messages);
        assert!(r.bytes >= r.messages * 100 && r.bytes <= r.messages * 200);
        let j = r.json();
        assert_eq!(j["mode"], "produce");
        assert_eq!(j["errors"], 0);
        assert!(j["msgs_per_sec"].as_f64().expect("rate") > 0.0);
        assert_eq!(j["config"]["partitions"], 4);
        assert!(j["latency_ms"]["p99"].as_f64().expect("p99") >= 0.0);
    }

    #[test]
    fn dry_run_open_loop_keeps_the_rate() {
        let r = run_args(&[
            "produce",
            "--dry-run",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--rate",
            "20000",
            "--message-size",
            "100",
            "--quiet",
            "--compression",
            "lz4",
        ])
        .expect("dry run");
        let rate = r.messages as f64 / r.seconds;
        assert!((17_000.0..23_000.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn open_loop_counts_what_it_could_not_send() {
        // 10^10 msgs/s cannot be generated: the backlog is reported, not hidden.
        let r = run_args(&[
            "produce",
            "--dry-run",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--rate",
            "10000000000",
            "--message-size",
            "100",
            "--quiet",
        ])
        .expect("dry run");
        assert!(
            r.unsent > r.messages,
            "{} unsent, {} sent",
            r.unsent,
            r.messages
        );
        let h = r.latency.as_ref().expect("latency");
        assert!(
            h.max() >= 200_000,
            "max {} µs reflects the backlog",
            h.max()
        );
        assert!(r.text().contains("never sent"));
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(run_args(&["produce", "--dry-run", "--acks", "2"]).is_err());
        assert!(run_args(&["produce", "--dry-run", "--message-size", "a"]).is_err());
        assert!(run_args(&["consume", "--dry-run"]).is_err());
    }

    #[test]
    fn producers_send_each_partition_to_its_leader() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cluster = rt.block_on(fake::start(2, "t", 4));
        // The first bootstrap address is dead; the second answers.
        let boot = format!("127.0.0.1:1,{}", cluster.addrs[1]);
        let r = run_args(&[
            "produce",
            "--bootstrap",
            &boot,
            "--topic",
            "t",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
            "--message-size",
            "50",
            "--keys",
            "1000",
            "--acks",
            "1",
            "--quiet",
        ])
        .expect("runs against the fake cluster");
        assert!(r.messages > 0);
        assert_eq!(r.errors, 0, "no partition went to a non-leader");
        let st = cluster.state.lock().expect("state");
        let mut seen: Vec<(i32, i32)> = st.produced.iter().map(|(b, p, _)| (*b, *p)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![(0, 0), (0, 2), (1, 1), (1, 3)]);
        assert_eq!(r.json()["versions"]["produce"], 9);
    }

    #[test]
    fn consumers_reset_out_of_range_offsets_and_skip_partial_batches() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cluster = rt.block_on(fake::start(1, "t", 1));
        let r = run_args(&[
            "consume",
            "--bootstrap",
            &cluster.addrs[0],
            "--topic",
            "t",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--quiet",
        ])
        .expect("consumes");
        assert_eq!(r.messages, 3, "the three whole records at 100..103");
        assert_eq!(r.bytes, 30);
        let st = cluster.state.lock().expect("state");
        let offsets: Vec<i64> = st.fetches.iter().map(|f| f.2).collect();
        assert_eq!(&offsets[..3], &[0, 100, 103]);
    }

    #[test]
    fn partitions_are_dealt_to_producers() {
        assert_eq!(owned_partitions(0, 1, 4), vec![0, 1, 2, 3]);
        assert_eq!(owned_partitions(1, 3, 6), vec![1, 4]);
        assert_eq!(owned_partitions(5, 8, 4), vec![1]);
    }
}
