//! Sub-millisecond sleeps for the open-loop schedule. Tokio's timer works in whole milliseconds
//! and fires up to one late; the schedule measures latency from due times, so that lateness
//! would be charged to the broker. One thread keeps the pending deadlines and wakes each
//! sleeper at its moment (a futex timeout: tens of microseconds late at most).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::oneshot;

struct Wake {
    at: Instant,
    tx: oneshot::Sender<()>,
}

/// Sleeps until `at` with microsecond-scale precision.
pub async fn sleep_until(at: Instant) {
    if at <= Instant::now() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    if timer().send(Wake { at, tx }).is_err() {
        // No timer thread (it could not start): the coarse timer is still correct, only late.
        tokio::time::sleep_until(at.into()).await;
        return;
    }
    let _ = rx.await;
}

fn timer() -> &'static mpsc::Sender<Wake> {
    static TIMER: OnceLock<mpsc::Sender<Wake>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        // If the thread cannot start, `rx` is dropped and sends fail: see `sleep_until`.
        let _ = std::thread::Builder::new()
            .name("precise-timer".into())
            .spawn(move || run(rx));
        tx
    })
}

/// Pending sleeps: one per sleeping producer task plus the lag probe, so a scan for the
/// earliest is cheap.
fn run(rx: mpsc::Receiver<Wake>) {
    let mut pending: Vec<Wake> = Vec::new();
    loop {
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            if pending[i].at <= now {
                let _ = pending.swap_remove(i).tx.send(());
            } else {
                i += 1;
            }
        }
        let got = match pending.iter().map(|w| w.at).min() {
            Some(next) => rx.recv_timeout(next.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(w) => pending.push(w),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if pending.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wakes_in_order_and_close_to_the_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let start = Instant::now();
            let ats = [3u64, 1, 2]
                .iter()
                .map(|k| start + Duration::from_micros(k * 1500))
                .collect();
            let late = tokio::time::timeout(Duration::from_secs(5), sleep_all(ats))
                .await
                .expect("every sleeper is woken");
            for l in late {
                // Generous for a loaded CI box; tokio's own timer is often ~1 ms late here.
                assert!(l < Duration::from_millis(20), "woke {l:?} late");
            }
        });
    }

    async fn sleep_all(ats: Vec<Instant>) -> Vec<Duration> {
        let tasks: Vec<_> = ats
            .into_iter()
            .map(|at| {
                tokio::spawn(async move {
                    sleep_until(at).await;
                    let now = Instant::now();
                    assert!(now >= at, "never wakes early");
                    now - at
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }
}
