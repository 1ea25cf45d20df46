//! Cross-shard hop round trip: a message through the glommio channel mesh to another pinned
//! executor and a reply back. `oneshot_reply` answers on a futures oneshot from the other
//! thread (what `Shard::invoke_on` did until the glommio foreign-wake double free);
//! `mesh_reply` sends the answer back through the mesh, as `Shard::reply_to` does now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use futures::channel::oneshot;
use futures::StreamExt;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use tidewater::shard::mesh::{full_mesh, MeshEnds};

type Msg = Box<dyn FnOnce() -> u64 + Send>;

/// Runs `body(ends, elapsed_ns)` on each of two shards joined by a mesh of `T` and returns the
/// time shard 0 stored in `elapsed_ns`.
fn on_two_shards<T, F, Fut>(spin: std::time::Duration, body: F) -> std::time::Duration
where
    T: Send + 'static,
    F: Fn(MeshEnds<T>, Arc<AtomicU64>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (ends_tx, ends_rx) = crossbeam_channel::bounded(2);
    for ends in full_mesh::<T>(2, 1024) {
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
            body(ends, out.clone())
        })
        .expect("pool")
        .join_all();
    std::time::Duration::from_nanos(elapsed_ns.load(Ordering::SeqCst))
}

/// `iters` round trips from shard 0 to shard 1, answered on a oneshot from shard 1's thread.
fn round_trips(iters: u64, spin: std::time::Duration) -> std::time::Duration {
    on_two_shards::<(Msg, oneshot::Sender<u64>), _, _>(spin, move |ends, out| async move {
        let (tx, rx) = ends.connect().await;
        if tx.id() == 0 {
            let start = Instant::now();
            for i in 0..iters {
                let (otx, orx) = oneshot::channel();
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
    })
}

/// `iters` round trips from shard 0 to shard 1 and back, both ways through the mesh.
fn mesh_round_trips(iters: u64, spin: std::time::Duration) -> std::time::Duration {
    on_two_shards::<u64, _, _>(spin, move |ends, out| async move {
        let (tx, rx) = ends.connect().await;
        let mut streams: Vec<_> = rx.into_iter().map(|(_, s)| s).collect();
        let Some(stream) = streams.first_mut() else {
            return;
        };
        if tx.id() == 0 {
            let start = Instant::now();
            for i in 0..iters {
                if tx.send_to(1, i).await.is_err() || stream.next().await.is_none() {
                    break;
                }
            }
            out.store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
        } else {
            while let Some(i) = stream.next().await {
                if tx.send_to(0, i + 1).await.is_err() {
                    break;
                }
            }
        }
        tx.close();
    })
}

fn bench_hop(c: &mut Criterion) {
    c.bench_function("cross_shard_round_trip/oneshot_reply/park", |b| {
        b.iter_custom(|n| round_trips(n, std::time::Duration::ZERO))
    });
    c.bench_function("cross_shard_round_trip/oneshot_reply/spin_100us", |b| {
        b.iter_custom(|n| round_trips(n, std::time::Duration::from_micros(100)))
    });
    c.bench_function("cross_shard_round_trip/mesh_reply/park", |b| {
        b.iter_custom(|n| mesh_round_trips(n, std::time::Duration::ZERO))
    });
    c.bench_function("cross_shard_round_trip/mesh_reply/spin_100us", |b| {
        b.iter_custom(|n| mesh_round_trips(n, std::time::Duration::from_micros(100)))
    });
}

criterion_group!(benches, bench_hop);
criterion_main!(benches);
