//! tidewater-bench: a load generator for any Kafka-compatible broker.
//! Modes: produce, consume, e2e (end-to-end latency from a timestamp carried in each message).
//! Open-loop with `--rate` (latency measured from each message's scheduled send time, so
//! coordinated omission cannot hide stalls) or closed-loop as fast as acknowledgements allow.

mod proto;
mod stats;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};

use proto::{encode_batch, for_each_record, frame, read_frame, Conn, Msg};
use stats::{histogram, Counters, Report};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    Produce,
    Consume,
    E2e,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tidewater-bench",
    about = "Load generator for Kafka-compatible brokers"
)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Create the topic with this many partitions if it is missing.
    #[arg(long)]
    partitions: Option<i32>,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Message (value) size: `100` or a range `100-1000`.
    #[arg(long, default_value = "1024")]
    message_size: String,
    /// none, random, or a key-space size N.
    #[arg(long, default_value = "none")]
    keys: String,
    /// Bytes of messages per partition batch.
    #[arg(long, default_value_t = 262_144)]
    batch_bytes: usize,
    /// Partition batches per produce request (0: every partition).
    #[arg(long, default_value_t = 0)]
    batches_per_request: usize,
    /// How long a batch may wait for more messages in open-loop mode.
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
    /// Messages per second across all producers (open loop); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    max_in_flight: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// Encode and frame requests without a broker: the generator's own ceiling.
    #[arg(long)]
    dry_run: bool,
    /// Consume mode: start at the earliest offset (default) or the latest.
    #[arg(long)]
    from_latest: bool,
}

fn sizes(spec: &str) -> anyhow::Result<(usize, usize)> {
    match spec.split_once('-') {
        Some((a, b)) => Ok((a.trim().parse()?, b.trim().parse()?)),
        None => {
            let n = spec.trim().parse()?;
            Ok((n, n))
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Shared {
    args: Args,
    counters: Arc<Counters>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    partitions: i32,
    stop: AtomicBool,
}

impl Shared {
    fn measuring(&self, t: Instant) -> bool {
        t >= self.measure_from && t <= self.end
    }
}

/// What the reader thread needs to account for one produce request.
struct InFlight {
    correlation: i32,
    messages: u64,
    bytes: u64,
    /// Scheduled (open loop) or created (closed loop) time of the first message, and the step.
    first: Instant,
    step: Duration,
}

fn producer(id: usize, sh: Arc<Shared>) -> anyhow::Result<Histogram<u64>> {
    let a = &sh.args;
    let (min_size, max_size) = sizes(&a.message_size)?;
    let acks: i16 = match a.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be 0, 1 or all, got {other}"),
    };
    let compression = match a.compression {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    let key_space: Option<u64> = match a.keys.as_str() {
        "none" => None,
        "random" => Some(u64::MAX),
        n => Some(n.parse().context("--keys takes none, random or a number")?),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64 + 1);
    let payload: Vec<u8> = (0..max_size.max(8)).map(|_| rng.gen()).collect();
    let (mut conn, produce_version) = if a.dry_run {
        (None, 8)
    } else {
        let c = Conn::connect(&a.bootstrap)?;
        let v = c.versions.produce;
        (Some(c), v)
    };
    let mut hist = histogram();
    let (tx, rx) = mpsc::sync_channel::<InFlight>(a.max_in_flight.max(1));
    let reader = match (&conn, acks) {
        (Some(c), a) if a != 0 => {
            let stream = c.stream.try_clone()?;
            let sh2 = sh.clone();
            Some(std::thread::spawn(move || {
                read_acks(stream, rx, sh2, produce_version)
            }))
        }
        _ => None,
    };
    let partitions = sh.partitions.max(1);
    let per_request = if a.batches_per_request == 0 {
        partitions as usize
    } else {
        a.batches_per_request.min(partitions as usize)
    };
    let msgs_per_batch = (a.batch_bytes / ((min_size + max_size) / 2).max(1)).max(1);
    let step = (1_000_000_000 * a.producers as u64)
        .checked_div(a.rate)
        .map(Duration::from_nanos)
        .unwrap_or(Duration::ZERO);
    let mut next_sched = sh.start;
    let mut rr_partition = id as i32 % partitions;
    let mut out = BytesMut::with_capacity(a.batch_bytes * per_request + 4096);
    let mut sink_bytes = 0u64;
    let mut key_buf = [0u8; 20];
    while !sh.stop.load(Ordering::Relaxed) && Instant::now() < sh.end {
        // How many messages go in this request.
        let mut count = msgs_per_batch * per_request;
        let first = if a.rate > 0 {
            let now = Instant::now();
            if next_sched > now {
                std::thread::sleep(next_sched - now);
            }
            let now = Instant::now();
            let due = ((now - next_sched).as_nanos() / step.as_nanos().max(1)) as usize + 1;
            let linger_over = now >= next_sched + Duration::from_millis(a.linger_ms);
            if due < count && !linger_over {
                std::thread::sleep(
                    Duration::from_micros(100).min(Duration::from_millis(a.linger_ms)),
                );
                continue;
            }
            count = count.min(due);
            let f = next_sched;
            next_sched += step * count as u32;
            f
        } else {
            Instant::now()
        };
        // Group the messages by partition.
        let mut groups: Vec<(i32, Vec<Msg>)> = Vec::new();
        let ts_ms = (now_ns() / 1_000_000) as i64;
        let sched_ns = now_ns().saturating_sub(first.elapsed().as_nanos() as u64);
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(count);
        let mut keys: Vec<Option<Vec<u8>>> = Vec::with_capacity(count);
        let mut parts: Vec<i32> = Vec::with_capacity(count);
        for i in 0..count {
            let size = if max_size > min_size {
                rng.gen_range(min_size..=max_size)
            } else {
                min_size
            };
            let mut v = payload[..size.max(8)].to_vec();
            v.truncate(size.max(8));
            // The message's scheduled send time rides in its first 8 bytes (e2e latency).
            let t = sched_ns + (step.as_nanos() as u64) * i as u64;
            v[..8].copy_from_slice(&t.to_be_bytes());
            let (key, part) = match key_space {
                None => {
                    if i % msgs_per_batch == 0 && i > 0 {
                        rr_partition = (rr_partition + 1) % partitions;
                    }
                    (None, rr_partition)
                }
                Some(space) => {
                    let k: u64 = if space == u64::MAX {
                        rng.gen()
                    } else {
                        rng.gen_range(0..space.max(1))
                    };
                    let s = {
                        let mut w = &mut key_buf[..];
                        let _ = write!(w, "{k}");
                        20 - w.len()
                    };
                    let kb = key_buf[..s].to_vec();
                    let p = (crc32c::crc32c(&kb) % partitions as u32) as i32;
                    (Some(kb), p)
                }
            };
            values.push(v);
            keys.push(key);
            parts.push(part);
        }
        rr_partition = (rr_partition + 1) % partitions;
        for i in 0..count {
            let m = Msg {
                key: keys[i].as_deref(),
                value: &values[i],
                timestamp_ms: ts_ms,
            };
            match groups.iter_mut().find(|(p, _)| *p == parts[i]) {
                Some((_, g)) => g.push(m),
                None => groups.push((parts[i], vec![m])),
            }
        }
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_string(a.topic.clone()));
        let mut bytes = 0u64;
        for (p, g) in &groups {
            let mut b = BytesMut::new();
            encode_batch(g, compression, &mut b)?;
            bytes += g.iter().map(|m| m.value.len() as u64).sum::<u64>();
            let mut pd = PartitionProduceData::default();
            pd.index = *p;
            pd.records = Some(b.freeze());
            topic.partition_data.push(pd);
        }
        let mut req = ProduceRequest::default();
        req.acks = acks;
        req.timeout_ms = 30_000;
        req.topic_data = vec![topic];
        out.clear();
        let correlation = conn.as_mut().map(|c| c.next_correlation()).unwrap_or(0);
        frame(
            ApiKey::Produce,
            produce_version,
            correlation,
            &req,
            &mut out,
        )?;
        match conn.as_mut() {
            None => {
                sink_bytes += out.len() as u64;
                if sh.measuring(Instant::now()) {
                    sh.counters
                        .messages
                        .fetch_add(count as u64, Ordering::Relaxed);
                    sh.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
            }
            Some(c) => {
                if acks != 0 {
                    // Blocks while max_in_flight requests await their acknowledgement.
                    if tx
                        .send(InFlight {
                            correlation,
                            messages: count as u64,
                            bytes,
                            first,
                            step,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
                c.stream.write_all(&out)?;
                if acks == 0 {
                    let now = Instant::now();
                    if sh.measuring(now) {
                        sh.counters
                            .messages
                            .fetch_add(count as u64, Ordering::Relaxed);
                        sh.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                        let _ =
                            hist.record_n((now - first).as_micros().max(1) as u64, count as u64);
                    }
                }
            }
        }
    }
    drop(tx);
    if let Some(r) = reader {
        match r.join() {
            Ok(Ok(h)) => hist.add(h).ok(),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("ack reader panicked"),
        };
    }
    let _ = sink_bytes;
    Ok(hist)
}

fn read_acks(
    mut stream: std::net::TcpStream,
    rx: mpsc::Receiver<InFlight>,
    sh: Arc<Shared>,
    version: i16,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram();
    let mut n = 0u64;
    while let Ok(f) = rx.recv() {
        let mut body = read_frame(&mut stream)?;
        let corr = bytes::Buf::get_i32(&mut body);
        if corr != f.correlation {
            bail!(
                "out-of-order response: correlation {corr}, expected {}",
                f.correlation
            );
        }
        if ApiKey::Produce.response_header_version(version) >= 1 {
            proto::skip_tagged(&mut body)?;
        }
        let resp = ProduceResponse::decode(&mut body, version)?;
        let failed = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .filter(|p| p.error_code != 0)
            .count();
        let now = Instant::now();
        if failed > 0 {
            sh.counters
                .errors
                .fetch_add(failed as u64, Ordering::Relaxed);
            continue;
        }
        if !sh.measuring(now) {
            continue;
        }
        sh.counters
            .messages
            .fetch_add(f.messages, Ordering::Relaxed);
        sh.counters.bytes.fetch_add(f.bytes, Ordering::Relaxed);
        if f.step.is_zero() {
            let _ = hist.record_n((now - f.first).as_micros().max(1) as u64, f.messages);
        } else {
            for k in 0..f.messages {
                let sched = f.first + f.step * k as u32;
                let _ = hist.record(now.saturating_duration_since(sched).as_micros().max(1) as u64);
            }
        }
        n += 1;
        if n.is_multiple_of(64) {
            sh.counters
                .p99_us
                .store(hist.value_at_quantile(0.99), Ordering::Relaxed);
        }
    }
    Ok(hist)
}

fn consumer(id: usize, sh: Arc<Shared>) -> anyhow::Result<Histogram<u64>> {
    let a = &sh.args;
    let mut conn = Conn::connect(&a.bootstrap)?;
    let mine: Vec<i32> = (0..sh.partitions)
        .filter(|p| *p as usize % a.consumers == id)
        .collect();
    let latest = a.mode == Mode::E2e || a.from_latest;
    let starts = conn.list_offsets(&a.topic, sh.partitions, latest)?;
    let mut offsets: Vec<(i32, i64)> = mine.iter().map(|p| (*p, starts[*p as usize])).collect();
    let mut hist = histogram();
    let version = conn.versions.fetch;
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) && Instant::now() < sh.end {
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(a.topic.clone()));
        for (p, o) in &offsets {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *o;
            fp.partition_max_bytes = 4 << 20;
            t.partitions.push(fp);
        }
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 100;
        req.min_bytes = 1;
        req.max_bytes = 64 << 20;
        req.topics = vec![t];
        let resp: FetchResponse = conn.call(ApiKey::Fetch, version, &req)?;
        let now = Instant::now();
        let wall = now_ns();
        let measuring = sh.measuring(now);
        for tr in &resp.responses {
            for pr in &tr.partitions {
                let Some(slot) = offsets.iter_mut().find(|(p, _)| *p == pr.partition_index) else {
                    continue;
                };
                if pr.error_code != 0 {
                    sh.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if pr.error_code == 1 {
                        slot.1 =
                            conn.list_offsets(&a.topic, sh.partitions, false)?[slot.0 as usize];
                    }
                    continue;
                }
                let Some(records) = &pr.records else { continue };
                let e2e = a.mode == Mode::E2e;
                let (count, bytes, next) = for_each_record(records, slot.1, &mut |_, v| {
                    if e2e && measuring && v.len() >= 8 {
                        let sent = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
                        let _ = hist.record((wall.saturating_sub(sent) / 1000).max(1));
                    }
                });
                slot.1 = next.max(slot.1);
                if measuring {
                    sh.counters.messages.fetch_add(count, Ordering::Relaxed);
                    sh.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
            }
        }
        n += 1;
        if e2e_progress(a.mode, n) {
            sh.counters
                .p99_us
                .store(hist.value_at_quantile(0.99), Ordering::Relaxed);
        }
    }
    Ok(hist)
}

fn e2e_progress(mode: Mode, n: u64) -> bool {
    mode == Mode::E2e && n.is_multiple_of(16)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let partitions = if args.dry_run {
        args.partitions.unwrap_or(1)
    } else {
        let mut c = Conn::connect(&args.bootstrap)?;
        c.ensure_topic(&args.topic, args.partitions)?
    };
    let start = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let counters = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        args: args.clone(),
        counters: counters.clone(),
        start,
        measure_from: start + warmup,
        end: start + warmup + duration,
        partitions,
        stop: AtomicBool::new(false),
    });
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (c, d) = (counters.clone(), done.clone());
        std::thread::spawn(move || stats::progress(c, start, warmup, d))
    };
    let series = {
        let (c, d, sh) = (counters.clone(), done.clone(), sh.clone());
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut last = (0u64, 0u64);
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let (m, b) = (
                    c.messages.load(Ordering::Relaxed),
                    c.bytes.load(Ordering::Relaxed),
                );
                out.push((
                    sh.start.elapsed().as_secs_f64(),
                    (m - last.0) as f64,
                    (b - last.1) as f64 / 1e6,
                ));
                last = (m, b);
            }
            out
        })
    };
    let mut workers = Vec::new();
    if matches!(args.mode, Mode::Consume | Mode::E2e) && !args.dry_run {
        for i in 0..args.consumers {
            let sh = sh.clone();
            workers.push((false, std::thread::spawn(move || consumer(i, sh))));
        }
    }
    if matches!(args.mode, Mode::Produce | Mode::E2e) {
        for i in 0..args.producers {
            let sh = sh.clone();
            workers.push((true, std::thread::spawn(move || producer(i, sh))));
        }
    }
    let mut produce_hist = histogram();
    let mut e2e_hist = histogram();
    let mut failure = None;
    for (is_producer, w) in workers {
        match w.join() {
            Ok(Ok(h)) => {
                let target = if is_producer {
                    &mut produce_hist
                } else {
                    &mut e2e_hist
                };
                let _ = target.add(h);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("worker panicked")),
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let timeseries = series.join().unwrap_or_default();
    if let Some(e) = failure {
        return Err(e);
    }
    let seconds = duration
        .as_secs_f64()
        .min(start.elapsed().saturating_sub(warmup).as_secs_f64())
        .max(1e-9);
    let latency = match args.mode {
        Mode::Produce if !args.dry_run => Some(produce_hist),
        Mode::E2e => Some(e2e_hist),
        _ => None,
    };
    let report = Report {
        mode: format!("{:?}", args.mode).to_lowercase(),
        messages: counters.messages.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        seconds,
        errors: counters.errors.load(Ordering::Relaxed),
        latency,
        config: serde_json::json!({
            "bootstrap": args.bootstrap, "topic": args.topic, "partitions": partitions,
            "producers": args.producers, "consumers": args.consumers, "message_size": args.message_size,
            "keys": args.keys, "batch_bytes": args.batch_bytes, "linger_ms": args.linger_ms, "acks": args.acks,
            "compression": format!("{:?}", args.compression).to_lowercase(), "rate": args.rate,
            "duration": args.duration, "warmup": args.warmup, "max_in_flight": args.max_in_flight,
            "dry_run": args.dry_run,
        }),
        timeseries,
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)
            .with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_produces_and_reports() {
        let args = Args::parse_from([
            "tidewater-bench",
            "produce",
            "--dry-run",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--message-size",
            "100-200",
            "--keys",
            "50",
            "--partitions",
            "4",
        ]);
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let sh = Arc::new(Shared {
            args,
            counters: counters.clone(),
            start,
            measure_from: start + Duration::from_millis(100),
            end: start + Duration::from_millis(400),
            partitions: 4,
            stop: AtomicBool::new(false),
        });
        producer(0, sh).expect("dry run");
        let m = counters.messages.load(Ordering::Relaxed);
        let b = counters.bytes.load(Ordering::Relaxed);
        assert!(m > 1000, "{m} messages");
        assert!(b >= m * 100 && b <= m * 200);
    }

    #[test]
    fn size_specs_parse() {
        assert_eq!(sizes("100").expect("fixed"), (100, 100));
        assert_eq!(sizes("10-20").expect("range"), (10, 20));
        assert!(sizes("x").is_err());
    }
}
