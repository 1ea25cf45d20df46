//! Shared counters, latency histograms (workers record locally and merge every few hundred
//! milliseconds), the live progress line, the per-second time series and the final report.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Which latency a histogram holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lat {
    /// Produce: (scheduled) send to acknowledgement.
    Ack = 0,
    /// End to end: (scheduled) send time in the payload to consumption.
    E2e = 1,
    /// The generator's own lag: how late its 1 ms ticks ran (see `lag_probe`).
    Lag = 2,
}

pub struct Stats {
    /// Everything seen, warm-up included (the progress line).
    pub seen_messages: AtomicU64,
    pub seen_bytes: AtomicU64,
    /// Inside the measurement window.
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Open loop: messages due in the window that were never sent (the producer fell behind).
    pub unsent: AtomicU64,
    /// E2e: messages produced (acknowledged) in the window; the main counters are consumption.
    pub produced: AtomicU64,
    pub produced_bytes: AtomicU64,
    hists: [Mutex<Histogram<u64>>; 3],
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

impl Stats {
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Stats {
        Stats {
            seen_messages: AtomicU64::new(0),
            seen_bytes: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            produced_bytes: AtomicU64::new(0),
            hists: std::array::from_fn(|_| Mutex::new(histogram())),
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
        }
    }

    pub fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }

    /// Counts messages that completed (acknowledged, sent with acks=0, or consumed) at `now`.
    pub fn count(&self, now: Instant, messages: u64, bytes: u64) {
        self.seen_messages.fetch_add(messages, Ordering::Relaxed);
        self.seen_bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.in_window(now) {
            self.messages.fetch_add(messages, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// E2e producers: acknowledged messages, reported beside the consumed ones.
    pub fn count_produced(&self, now: Instant, messages: u64, bytes: u64) {
        if self.in_window(now) {
            self.produced.fetch_add(messages, Ordering::Relaxed);
            self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub fn error(&self, n: u64) {
        self.errors.fetch_add(n, Ordering::Relaxed);
    }

    pub fn merge(&self, which: Lat, h: &mut Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        if let Ok(mut g) = self.hists[which as usize].lock() {
            let _ = g.add(&*h);
        }
        h.reset();
    }

    pub fn snapshot(&self, which: Lat) -> Histogram<u64> {
        self.hists[which as usize]
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }

    fn p99_ms(&self, which: Lat) -> f64 {
        self.hists[which as usize]
            .lock()
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

/// A worker's histogram, merged into the shared one every 250 ms and at the end.
pub struct LocalHist {
    which: Lat,
    h: Histogram<u64>,
    last: Instant,
}

impl LocalHist {
    pub fn new(which: Lat) -> LocalHist {
        LocalHist {
            which,
            h: histogram(),
            last: Instant::now(),
        }
    }

    pub fn record(&mut self, micros: u64, n: u64) {
        let _ = self.h.record_n(micros.clamp(1, 3_600_000_000), n);
    }

    pub fn maybe_merge(&mut self, stats: &Stats, now: Instant) {
        if now.duration_since(self.last) >= Duration::from_millis(250) {
            stats.merge(self.which, &mut self.h);
            self.last = now;
        }
    }

    pub fn finish(&mut self, stats: &Stats) {
        stats.merge(self.which, &mut self.h);
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub t: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub p99_ms: f64,
    pub warmup: bool,
}

/// One line a second on stderr (overwritten in place on a terminal) and the time series,
/// until `done`.
pub fn progress(stats: Arc<Stats>, which: Lat, done: Arc<AtomicBool>, quiet: bool) -> Vec<Tick> {
    let tty = std::io::stderr().is_terminal();
    let mut ticks = Vec::new();
    let mut last = (0u64, 0u64, stats.start);
    let mut next = stats.start + Duration::from_secs(1);
    while !done.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        let m = stats.seen_messages.load(Ordering::Relaxed);
        let b = stats.seen_bytes.load(Ordering::Relaxed);
        let dt = now.duration_since(last.2).as_secs_f64().max(1e-9);
        let tick = Tick {
            t: now.duration_since(stats.start).as_secs_f64(),
            msgs_per_sec: (m - last.0) as f64 / dt,
            mb_per_sec: (b - last.1) as f64 / dt / 1e6,
            p99_ms: stats.p99_ms(which),
            // The interval is warm-up if it began before measuring did.
            warmup: last.2 < stats.measure_from,
        };
        last = (m, b, now);
        if !quiet {
            let line = format!(
                "[{} {:>6.1}s] {:>11.0} msg/s {:>9.2} MB/s  p99 {:>9.3} ms  errors {}",
                if tick.warmup { "warmup" } else { "run   " },
                tick.t,
                tick.msgs_per_sec,
                tick.mb_per_sec,
                tick.p99_ms,
                stats.errors.load(Ordering::Relaxed)
            );
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
        ticks.push(tick);
    }
    if tty && !quiet && !ticks.is_empty() {
        eprintln!();
    }
    ticks
}

pub struct Report {
    pub mode: String,
    pub messages: u64,
    pub bytes: u64,
    /// Everything completed over the whole run: warm-up and acknowledgements that arrived after
    /// the window included (what a consumer of the topic reads back).
    pub messages_total: u64,
    pub bytes_total: u64,
    pub seconds: f64,
    pub errors: u64,
    pub unsent: u64,
    pub latency: Option<Histogram<u64>>,
    /// E2e mode: the producers' send-to-ack latency, reported beside the e2e latency.
    pub ack_latency: Option<Histogram<u64>>,
    /// How late the generator's own 1 ms ticks ran (not in a dry run).
    pub lag: Option<Histogram<u64>>,
    /// E2e mode: messages and bytes produced (acknowledged) in the window.
    pub produced: Option<(u64, u64)>,
    pub config: serde_json::Value,
    pub versions: serde_json::Value,
    pub timeseries: Vec<Tick>,
}

fn percentiles(h: Option<&Histogram<u64>>) -> serde_json::Value {
    let q = |q: f64| {
        h.map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    serde_json::json!({
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999), "p99_99": q(0.9999),
        "max": h.map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0),
        "mean": h.map(|h| h.mean() / 1000.0).unwrap_or(0.0),
        "count": h.map(|h| h.len()).unwrap_or(0),
    })
}

/// Percentile curve for plots: (percentile, ms) at 0, 50, 75, 87.5, ... up to 99.999.
fn curve(h: Option<&Histogram<u64>>) -> Vec<serde_json::Value> {
    let Some(h) = h.filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut q = 0.0f64;
    while q < 0.99999 {
        out.push(serde_json::json!([
            q * 100.0,
            h.value_at_quantile(q) as f64 / 1000.0
        ]));
        q += (1.0 - q) / 2.0;
    }
    out.push(serde_json::json!([100.0, h.max() as f64 / 1000.0]));
    out
}

impl Report {
    pub fn json(&self) -> serde_json::Value {
        let secs = self.seconds.max(1e-9);
        let mut j = serde_json::json!({
            "mode": self.mode,
            "messages": self.messages,
            "bytes": self.bytes,
            "messages_total": self.messages_total,
            "bytes_total": self.bytes_total,
            "seconds": self.seconds,
            "msgs_per_sec": self.messages as f64 / secs,
            "mb_per_sec": self.bytes as f64 / secs / 1e6,
            "latency_ms": percentiles(self.latency.as_ref()),
            "latency_curve_ms": curve(self.latency.as_ref()),
            "errors": self.errors,
            "unsent": self.unsent,
            "config": self.config,
            "versions": self.versions,
            "timeseries": self.timeseries.iter().map(|t| serde_json::json!({
                "t": t.t, "msgs_per_sec": t.msgs_per_sec, "mb_per_sec": t.mb_per_sec,
                "p99_ms": t.p99_ms, "warmup": t.warmup,
            })).collect::<Vec<_>>(),
        });
        if let Some(h) = &self.ack_latency {
            j["ack_latency_ms"] = percentiles(Some(h));
        }
        if let Some(h) = &self.lag {
            j["generator_lag_ms"] = percentiles(Some(h));
        }
        if let Some((m, b)) = self.produced {
            j["produced_messages"] = m.into();
            j["produced_msgs_per_sec"] = (m as f64 / secs).into();
            j["produced_mb_per_sec"] = (b as f64 / secs / 1e6).into();
        }
        j
    }

    pub fn text(&self) -> String {
        let secs = self.seconds.max(1e-9);
        let mut s = format!(
            "{}: {} messages, {:.1} MB in {:.2} s: {:.0} msg/s, {:.2} MB/s, errors {}\n",
            self.mode,
            self.messages,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.messages as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            self.errors
        );
        if self.unsent > 0 {
            s += &format!(
                "{} messages were due but never sent (the producers fell behind the rate); \
                 they are in the latency as end - due\n",
                self.unsent
            );
        }
        let line = |name: &str, h: &Histogram<u64>| {
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            format!(
                "{name} latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  ({} samples)\n",
                q(0.5), q(0.9), q(0.99), q(0.999), q(0.9999), h.max() as f64 / 1000.0, h.len()
            )
        };
        if let Some((m, b)) = self.produced {
            s += &format!(
                "produced: {m} messages, {:.0} msg/s, {:.2} MB/s\n",
                m as f64 / secs,
                b as f64 / secs / 1e6
            );
        }
        if let Some(h) = &self.latency {
            let name = if self.mode == "e2e" { "e2e" } else { "ack" };
            s += &line(name, h);
        }
        if let Some(h) = &self.ack_latency {
            s += &line("ack", h);
        }
        if let Some(h) = self.lag.as_ref().filter(|h| !h.is_empty()) {
            s += &format!(
                "generator lag ms (its own 1 ms ticks, late by): p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.value_at_quantile(0.999) as f64 / 1000.0,
                h.max() as f64 / 1000.0
            );
        }
        s
    }

    /// CSV of the time series: t,msgs_per_sec,mb_per_sec,p99_ms,warmup.
    pub fn timeseries_csv(&self) -> String {
        let mut s = String::from("t,msgs_per_sec,mb_per_sec,p99_ms,warmup\n");
        for t in &self.timeseries {
            s += &format!(
                "{:.3},{:.1},{:.3},{:.3},{}\n",
                t.t, t.msgs_per_sec, t.mb_per_sec, t.p99_ms, t.warmup as u8
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_documented_fields_and_percentiles() {
        let mut h = histogram();
        for us in 1..=10_000u64 {
            h.record(us).expect("records");
        }
        let r = Report {
            mode: "produce".into(),
            messages: 2_000_000,
            bytes: 200_000_000,
            messages_total: 2_500_000,
            bytes_total: 250_000_000,
            seconds: 2.0,
            errors: 3,
            unsent: 0,
            latency: Some(h.clone()),
            ack_latency: None,
            lag: Some(h),
            produced: None,
            config: serde_json::json!({"acks": "all"}),
            versions: serde_json::json!({}),
            timeseries: vec![Tick {
                t: 1.0,
                msgs_per_sec: 5.0,
                mb_per_sec: 0.5,
                p99_ms: 9.9,
                warmup: true,
            }],
        };
        let j = r.json();
        assert_eq!(j["mode"], "produce");
        assert_eq!(j["messages"], 2_000_000);
        assert_eq!(j["bytes"], 200_000_000);
        assert_eq!(j["msgs_per_sec"], 1_000_000.0);
        assert_eq!(j["mb_per_sec"], 100.0);
        assert_eq!(j["errors"], 3);
        assert_eq!(j["messages_total"], 2_500_000);
        assert_eq!(j["bytes_total"], 250_000_000);
        let l = &j["latency_ms"];
        let near = |v: &serde_json::Value, want: f64| {
            let v = v.as_f64().expect("number");
            assert!((v - want).abs() <= want * 0.002, "{v} vs {want}");
        };
        near(&l["p50"], 5.0);
        near(&l["p90"], 9.0);
        near(&l["p99"], 9.9);
        near(&l["p99_9"], 9.99);
        near(&l["p99_99"], 9.999);
        near(&l["max"], 10.0);
        near(&j["generator_lag_ms"]["p99"], 9.9);
        assert!(r.text().contains("generator lag"));
        assert!(j["latency_curve_ms"].as_array().expect("curve").len() > 10);
        assert_eq!(j["timeseries"][0]["warmup"], true);
        assert!(r.text().contains("p99.99"));
        assert_eq!(r.timeseries_csv().lines().count(), 2);
    }

    #[test]
    fn counting_respects_the_window_and_histograms_merge() {
        let start = Instant::now();
        let s = Stats::new(start, Duration::from_secs(1), Duration::from_secs(1));
        s.count(start, 10, 100); // warm-up
        s.count(start + Duration::from_millis(1500), 5, 50);
        s.count(start + Duration::from_secs(3), 7, 70); // after the end
        assert_eq!(s.seen_messages.load(Ordering::Relaxed), 22);
        assert_eq!(s.messages.load(Ordering::Relaxed), 5);
        assert_eq!(s.bytes.load(Ordering::Relaxed), 50);
        let mut l = LocalHist::new(Lat::E2e);
        l.record(0, 3); // clamped to 1 µs
        l.record(2000, 1);
        l.finish(&s);
        let h = s.snapshot(Lat::E2e);
        assert_eq!(h.len(), 4);
        assert_eq!(h.min(), 1);
        assert!(s.snapshot(Lat::Ack).is_empty());
    }
}
