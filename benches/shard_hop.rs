//! Cross-shard hop round trip: a message through the glommio channel mesh to another pinned
//! executor and a reply back, as `Shard::invoke_on` does for every remote partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use futures::StreamExt;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use tidewater::shard::mesh::full_mesh;

type Msg = Box<dyn FnOnce() -> u64 + Send>;

/// Runs `iters` round trips from shard 0 to shard 1 and returns the elapsed time.
fn round_trips(iters: u64, spin: std::time::Duration) -> std::time::Duration {
    let (ends_tx, ends_rx) = crossbeam_channel::bounded(2);
    for ends in full_mesh::<(Msg, futures::channel::oneshot::Sender<u64>)>(2, 1024) {
        ends_tx.send(ends).expect("queue has room");
    }
    let elapsed_ns = Arc::new(AtomicU64::new(0));
    let out = elapsed_ns.clone();
    let placement = if std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        >= 2
    {
        PoolPlacement::MaxSpread(2, None)
    } else {
        PoolPlacement::Unbound(2)
    };
    LocalExecutorPoolBuilder::new(placement)
        .spin_before_park(spin)
        .on_all_shards(move || {
            let ends = ends_rx.try_recv().expect("one set of ends per shard");
            let out = out.clone();
            async move {
                let (tx, rx) = ends.connect().await;
                if tx.id() == 0 {
                    let start = Instant::now();
                    for i in 0..iters {
                        let (otx, orx) = futures::channel::oneshot::channel();
                        let msg: Msg = Box::new(move || i + 1);
                        if tx.send_to(1, (msg, otx)).await.is_err() {
                            break;
                        }
                        let _ = orx.await;
                    }
                    out.store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
                    tx.close();
                } else {
                    for (_, mut stream) in rx {
                        while let Some((f, reply)) = stream.next().await {
                            let _ = reply.send(f());
                        }
                    }
                }
            }
        })
        .expect("pool")
        .join_all();
    std::time::Duration::from_nanos(elapsed_ns.load(Ordering::SeqCst))
}

fn bench_hop(c: &mut Criterion) {
    c.bench_function("cross_shard_round_trip/park", |b| {
        b.iter_custom(|n| round_trips(n, std::time::Duration::ZERO))
    });
    c.bench_function("cross_shard_round_trip/spin_100us", |b| {
        b.iter_custom(|n| round_trips(n, std::time::Duration::from_micros(100)))
    });
}

criterion_group!(benches, bench_hop);
criterion_main!(benches);
