//! Counters shared by workers, per-worker latency histograms, the live progress line and the
//! final report (text and JSON).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// p99 so far in microseconds, published by workers now and then for the progress line.
    pub p99_us: AtomicU64,
}

/// Latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Prints one progress line a second to stderr until `done` is set.
pub fn progress(
    counters: Arc<Counters>,
    start: Instant,
    warmup: Duration,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = (0u64, 0u64, Instant::now());
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.2.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let m = counters.messages.load(Ordering::Relaxed);
        let b = counters.bytes.load(Ordering::Relaxed);
        let dt = last.2.elapsed().as_secs_f64();
        let phase = if start.elapsed() < warmup {
            "warmup"
        } else {
            "run"
        };
        let line = format!(
            "[{phase} {:>5.1}s] {:>10.0} msg/s {:>9.1} MB/s p99 {:>8.3} ms errors {}",
            start.elapsed().as_secs_f64(),
            (m - last.0) as f64 / dt,
            (b - last.1) as f64 / dt / 1e6,
            counters.p99_us.load(Ordering::Relaxed) as f64 / 1000.0,
            counters.errors.load(Ordering::Relaxed)
        );
        if tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
        last = (m, b, Instant::now());
    }
    if tty {
        eprintln!();
    }
}

pub struct Report {
    pub mode: String,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub errors: u64,
    pub latency: Option<Histogram<u64>>,
    pub config: serde_json::Value,
    pub timeseries: Vec<(f64, f64, f64)>,
}

impl Report {
    fn pct(&self, q: f64) -> f64 {
        self.latency
            .as_ref()
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    }

    pub fn json(&self) -> serde_json::Value {
        let max = self
            .latency
            .as_ref()
            .map(|h| h.max() as f64 / 1000.0)
            .unwrap_or(0.0);
        serde_json::json!({
            "mode": self.mode,
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "msgs_per_sec": self.messages as f64 / self.seconds.max(1e-9),
            "mb_per_sec": self.bytes as f64 / self.seconds.max(1e-9) / 1e6,
            "latency_ms": {
                "p50": self.pct(0.50),
                "p90": self.pct(0.90),
                "p99": self.pct(0.99),
                "p99_9": self.pct(0.999),
                "p99_99": self.pct(0.9999),
                "max": max,
            },
            "errors": self.errors,
            "config": self.config,
            "timeseries": self.timeseries.iter().map(|(t, m, b)| serde_json::json!({"t": t, "msgs_per_sec": m, "mb_per_sec": b})).collect::<Vec<_>>(),
        })
    }

    pub fn print(&self) {
        println!(
            "{}: {} messages, {:.1} MB in {:.2} s: {:.0} msg/s, {:.2} MB/s, errors {}",
            self.mode,
            self.messages,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.messages as f64 / self.seconds.max(1e-9),
            self.bytes as f64 / self.seconds.max(1e-9) / 1e6,
            self.errors
        );
        if self.latency.is_some() {
            println!(
                "latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} p99.99 {:.3} max {:.3}",
                self.pct(0.5),
                self.pct(0.9),
                self.pct(0.99),
                self.pct(0.999),
                self.pct(0.9999),
                self.latency
                    .as_ref()
                    .map(|h| h.max() as f64 / 1000.0)
                    .unwrap_or(0.0)
            );
        }
    }
}
