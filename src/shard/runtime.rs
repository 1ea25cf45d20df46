//! Starting and stopping the shards.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use glommio::{CpuSet, Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares};

use super::{Shard, ShardMsg, Shared};
use crate::config::Config;
use crate::controller::Catalog;
use crate::storage::log::StorageEnv;

/// Cross-shard messages being processed at once per shard (their futures are spawned).
pub const CROSS_SHARD_TASKS_MAX: u64 = 4096;
/// How often shards look at the shutdown flag.
const SHUTDOWN_POLL_MS: u64 = 50;
/// Longest wait for connections to finish their in-flight requests at shutdown.
const DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Shares of the accept task queue (the serving queue has glommio's default, 1000).
const ACCEPT_SHARES: usize = 50;

/// The online CPUs this process may run on, so `taskset -c 2-3 tidewater serve` pins the
/// shards within CPUs 2-3 (glommio's placement alone would use any online CPU).
fn allowed_cpus() -> Option<CpuSet> {
    let online = CpuSet::online().ok()?;
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most `size_of` bytes of it.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) };
    if rc != 0 {
        return Some(online);
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the mask filled above, for an index checked against its size.
    Some(online.filter(|l| l.cpu < max && unsafe { libc::CPU_ISSET(l.cpu, &mask) }))
}

/// Runs the broker until `shared.shutdown` is set and every shard has stopped.
pub fn run(config: Config, shared: Arc<Shared>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let catalog = Arc::new(Catalog::load(&config.data_dir, config.cores)?);
    let n = config.cores;
    let cpus = allowed_cpus();
    let placement = match &cpus {
        Some(c) if c.len() >= n => PoolPlacement::MaxSpread(n, cpus.clone()),
        _ => PoolPlacement::Unbound(n),
    };
    let spin_us = config.spin_before_park_us;
    let ring_depth = config.io_ring_depth.max(1);
    // Each shard thread takes one shard's channel ends (see `mesh` for why not MeshBuilder).
    let (ends_tx, ends_rx) = crossbeam_channel::bounded(n);
    for ends in super::mesh::full_mesh::<ShardMsg>(n, config.cross_shard_queue_depth) {
        ends_tx
            .send(ends)
            .map_err(|_| anyhow::anyhow!("handing out mesh ends"))?;
    }
    tracing::info!(shards = n, listen = %config.listen, data_dir = %config.data_dir.display(), "starting tidewater");
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("tidewater-shard")
        .spin_before_park(Duration::from_micros(spin_us))
        .ring_depth(ring_depth)
        .on_all_shards(move || {
            let config = config.clone();
            let shared = shared.clone();
            let catalog = catalog.clone();
            let ends = ends_rx.try_recv();
            async move {
                let res = match ends {
                    Ok(ends) => shard_main(config, shared.clone(), catalog, ends).await,
                    // The pool starts exactly n threads for n ends: a broken invariant.
                    Err(_) => Err(anyhow::anyhow!("no mesh ends left for this shard")),
                };
                if let Err(e) = &res {
                    // One shard down means partitions nobody serves: stop the whole broker.
                    tracing::error!("shard failed: {e:#}");
                    shared.request_shutdown();
                }
                res
            }
        })
        .map_err(|e| anyhow::anyhow!("starting shard executors: {e}"))?;
    let mut failed = None;
    for r in handles.join_all() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(anyhow::anyhow!("shard thread failed: {e:?}")),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn shard_main(
    config: Arc<Config>,
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    ends: super::mesh::MeshEnds<ShardMsg>,
) -> anyhow::Result<()> {
    let (senders, receivers) = ends.connect().await;
    let id = senders.id();
    let storage = StorageEnv::dma(&config.data_dir, config.shard_cache_bytes)
        .await
        .map_err(|e| anyhow::anyhow!("shard {id}: storage: {e}"))?;
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        shared.clone(),
        senders,
        catalog.clone(),
        storage,
    ));
    // Open the partitions this shard owns before serving anything for them.
    crate::server::topics::open_owned_partitions(&shard).await?;
    // Drain cross-shard queues: each message runs its synchronous part in arrival order.
    let tasks = Rc::new(glommio::sync::Semaphore::new(CROSS_SHARD_TASKS_MAX));
    for (_peer, stream) in receivers {
        let shard = shard.clone();
        let tasks = tasks.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let permit = match tasks.acquire_static_permit(1).await {
                    Ok(p) => p,
                    Err(_) => break,
                };
                let fut = msg(&shard);
                glommio::spawn_local(async move {
                    fut.await;
                    drop(permit);
                })
                .detach();
            }
        })
        .detach();
    }
    let listener = glommio::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("shard {id}: binding {}: {e}", config.listen))?;
    shared.started.fetch_add(1, Ordering::SeqCst);
    tracing::info!(
        shard = id,
        partitions = shard.all_partitions().len(),
        "shard ready"
    );
    // Accepting runs in its own task queue with few shares: under a connection flood the
    // requests of connected clients go first (connections themselves are served in this one).
    let serve_tq = glommio::executor().current_task_queue();
    let accept_tq = glommio::executor().create_task_queue(
        Shares::Static(ACCEPT_SHARES),
        Latency::NotImportant,
        "accept",
    );
    let accept = glommio::spawn_local_into(
        crate::server::accept_loop(shard.clone(), listener, serve_tq),
        accept_tq,
    )
    .map_err(|e| anyhow::anyhow!("shard {id}: spawning the accept loop: {e}"))?;
    let ticker = glommio::spawn_local(crate::server::topics::maintenance_loop(shard.clone()));
    let groups = glommio::spawn_local(crate::coordinator::run(shard.clone()));

    while !shared.is_shutting_down() {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    shard.notify_shutdown();
    // Phase 1: stop accepting, let connections finish what they started.
    accept.cancel().await;
    let drain_deadline = std::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while shard.connections.get() > 0 && std::time::Instant::now() < drain_deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shared.drained.fetch_add(1, Ordering::SeqCst);
    // Other shards may still need our partitions until they have drained too.
    while shared.drained.load(Ordering::SeqCst) < shard.nr_shards
        && std::time::Instant::now() < drain_deadline
    {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    ticker.cancel().await;
    groups.cancel().await;
    // Phase 2: flush and close every log.
    for p in shard.all_partitions() {
        if let Err(e) = p.close().await {
            tracing::error!(topic = %p.topic, partition = p.index, "close failed: {e}");
        }
    }
    tracing::info!(shard = id, "shard stopped");
    Ok(())
}
