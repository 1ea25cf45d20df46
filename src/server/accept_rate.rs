//! `max.connection.creation.rate` (KIP-612) on one shard: a token bucket refilled at the shard's
//! share of the broker-wide rate. When it is empty the accept loop waits instead of accepting,
//! so a connection storm queues in the kernel's backlog (and then in the storming clients'
//! connect retries) rather than in the shard's CPU time; connected clients are not affected.

use std::time::{Duration, Instant};

pub struct CreationRate {
    per_sec: f64,
    /// At most one second's worth (and at least one connection) can be taken at once.
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl CreationRate {
    /// `broker_per_sec` split evenly over `shards` (every shard accepts its kernel-chosen share).
    /// `i32::MAX`, Kafka's default, means unlimited.
    pub fn new(broker_per_sec: u32, shards: usize, now: Instant) -> CreationRate {
        let per_sec = if broker_per_sec >= i32::MAX as u32 {
            f64::INFINITY
        } else {
            f64::from(broker_per_sec.max(1)) / shards.max(1) as f64
        };
        let burst = per_sec.max(1.0);
        CreationRate {
            per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one connection's token, or says how long until one is there.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_sec.is_infinite() {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            debug_assert!(
                self.tokens >= 0.0,
                "a token is only taken when one is there"
            );
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_by_default() {
        let t = Instant::now();
        let mut r = CreationRate::new(i32::MAX as u32, 2, t);
        assert!((0..100_000).all(|_| r.admit(t).is_ok()));
    }

    #[test]
    fn burst_of_one_second_then_the_rate() {
        let t = Instant::now();
        // 100/s over 2 shards: 50/s and a burst of 50 on this one.
        let mut r = CreationRate::new(100, 2, t);
        assert_eq!((0..200).filter(|_| r.admit(t).is_ok()).count(), 50);
        let wait = r.admit(t).expect_err("empty");
        assert!(
            wait > Duration::from_millis(15) && wait <= Duration::from_millis(20),
            "{wait:?}"
        );
        // Over the next second (in 1 ms steps) about 50 more get in: the rate, not more.
        let admitted = (1..=1000)
            .filter(|ms| r.admit(t + Duration::from_millis(*ms)).is_ok())
            .count();
        assert!((49..=51).contains(&admitted), "{admitted}");
        // Idle time refills only up to the burst.
        let later = t + Duration::from_secs(60);
        assert_eq!((0..200).filter(|_| r.admit(later).is_ok()).count(), 50);
    }

    #[test]
    fn a_rate_below_the_shard_count_still_admits_one_at_a_time() {
        let t = Instant::now();
        let mut r = CreationRate::new(1, 4, t); // a quarter of a connection per second per shard
        assert!(r.admit(t).is_ok());
        let wait = r.admit(t).expect_err("empty");
        assert_eq!(wait, Duration::from_secs(4));
        assert!(r.admit(t + Duration::from_secs(4)).is_ok());
    }
}
