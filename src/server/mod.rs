//! The Kafka listener: accept loop, per-connection request pipeline, dispatch to one handler
//! file per API (`handlers/`), and the topic lifecycle (`topics`).

pub mod accept_rate;
pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod topics;

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::TaskQueueHandle;

use crate::shard::Shard;

/// Accepts connections on this shard (every shard binds the port with SO_REUSEPORT; the kernel
/// spreads connections) until cancelled at shutdown.
/// Connections are served in `serve_tq`, not in the accept loop's (low-share) queue.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, serve_tq: TaskQueueHandle) {
    // `max.connections` is per broker; each shard takes its share.
    let per_shard_max = shard
        .config
        .max_connections
        .div_ceil(shard.nr_shards)
        .max(1);
    let per_ip = shard.config.limits_connections_per_ip();
    let mut creation_rate = accept_rate::CreationRate::new(
        shard.config.max_connection_creation_rate,
        shard.nr_shards,
        std::time::Instant::now(),
    );
    loop {
        // max.connection.creation.rate: wait for a token before taking the next connection.
        while let Err(wait) = creation_rate.admit(std::time::Instant::now()) {
            glommio::timer::sleep(wait).await;
        }
        match listener.accept().await {
            Ok(stream) => {
                if shard.connections.get() >= per_shard_max {
                    tracing::warn!(
                        shard = shard.id,
                        "max.connections reached; closing new connection"
                    );
                    drop(stream);
                    continue;
                }
                // max.connections.per.ip: the address's owner shard keeps the count.
                let ip = if per_ip {
                    stream.peer_addr().ok().map(|a| a.ip())
                } else {
                    None
                };
                if let Some(ip) = ip {
                    let limit = shard.config.max_connections_for(ip);
                    let owner = shard.shard_for_ip(ip);
                    let admitted = shard
                        .invoke_on(owner, move |s: Rc<Shard>| async move {
                            s.register_ip_connection(ip, limit)
                        })
                        .await
                        .unwrap_or(false);
                    if !admitted {
                        tracing::warn!(
                            shard = shard.id,
                            %ip,
                            limit,
                            "max.connections.per.ip reached; closing new connection"
                        );
                        drop(stream);
                        continue;
                    }
                }
                shard.connections.set(shard.connections.get() + 1);
                let s = shard.clone();
                let spawned = glommio::spawn_local_into(
                    async move {
                        if let Err(e) = connection::serve(s.clone(), stream).await {
                            tracing::debug!(shard = s.id, "connection closed: {e}");
                        }
                        s.connections.set(s.connections.get() - 1);
                        if let Some(ip) = ip {
                            let owner = s.shard_for_ip(ip);
                            s.send_to(
                                owner,
                                Box::new(move |o: &Rc<Shard>| {
                                    o.unregister_ip_connection(ip);
                                    Box::pin(async {})
                                }),
                            )
                            .await;
                        }
                    },
                    serve_tq,
                );
                match spawned {
                    Ok(task) => {
                        task.detach();
                    }
                    Err(e) => {
                        // Only an invalid queue handle fails: a broken invariant, but keep serving.
                        tracing::error!(shard = shard.id, "spawning a connection: {e}");
                        shard.connections.set(shard.connections.get() - 1);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, "accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Per-partition work for one shard: (position in the request, topic, partition, item).
pub type ShardWork<T> = Vec<(usize, String, i32, T)>;

/// Splits per-partition work by owning shard, keeping each item's position in the request so
/// answers can be put back in order. Items for unknown partitions are returned separately.
pub fn group_by_shard<T>(
    shard: &Shard,
    items: Vec<(String, i32, T)>,
) -> (Vec<(usize, ShardWork<T>)>, ShardWork<T>) {
    let cat = shard.catalog();
    let mut by_shard: Vec<ShardWork<T>> = (0..shard.nr_shards).map(|_| Vec::new()).collect();
    let mut unknown = Vec::new();
    for (pos, (topic, partition, item)) in items.into_iter().enumerate() {
        match cat.shard_for(&topic, partition) {
            Some(s) => by_shard[s].push((pos, topic, partition, item)),
            None => unknown.push((pos, topic, partition, item)),
        }
    }
    let grouped = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    (grouped, unknown)
}

/// Work for one partition on its owning shard.
pub type PartitionFn<T, A> =
    fn(Rc<Shard>, String, i32, T) -> futures::future::LocalBoxFuture<'static, A>;

/// Runs `per_partition` for every item on the shard that owns it (one hop per shard, all shards
/// at once) and returns the answers in request order; unknown partitions answer `unknown`.
pub async fn fan_out<T, A>(
    shard: &Rc<Shard>,
    items: Vec<(String, i32, T)>,
    unknown: A,
    per_partition: PartitionFn<T, A>,
) -> Vec<A>
where
    T: Send + 'static,
    A: Clone + Send + 'static,
{
    let mut answers = vec![unknown; items.len()];
    let (groups, _unknown) = group_by_shard(shard, items);
    let calls = groups.into_iter().map(|(target, work)| {
        shard.invoke_on(target, move |s: Rc<Shard>| async move {
            let mut out = Vec::with_capacity(work.len());
            for (pos, topic, partition, item) in work {
                out.push((pos, per_partition(s.clone(), topic, partition, item).await));
            }
            out
        })
    });
    for res in futures::future::join_all(calls).await.into_iter().flatten() {
        for (pos, a) in res {
            answers[pos] = a;
        }
    }
    answers
}
