//! The cross-shard mesh: one bounded glommio shared channel per ordered pair of shards.
//!
//! Every channel is created on the main thread before the shards start, and each shard gets
//! its own ends (`MeshEnds`) through a crossbeam queue. We do not use glommio 0.9's
//! `MeshBuilder`: every shard thread clones and drops one `Rc` inside it, and those
//! unsynchronised reference-count updates raced at start-up (AddressSanitizer: heap use after
//! free in `MeshBuilder::join`; in release builds an occasional `malloc(): unaligned tcache
//! chunk` abort). Here nothing is shared between threads but the channels themselves, which are
//! built for it.

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

/// The channel ends one shard owns before it connects them.
pub struct MeshEnds<T: Send + 'static> {
    pub id: usize,
    /// `senders[j]`: to shard j (`None` for this shard itself).
    senders: Vec<Option<SharedSender<T>>>,
    /// `receivers[i]`: from shard i (`None` for this shard itself).
    receivers: Vec<Option<SharedReceiver<T>>>,
}

/// A full mesh for `nr_shards` shards with `depth` messages of room per channel; element `i`
/// belongs to shard `i`.
pub fn full_mesh<T: Send + 'static>(nr_shards: usize, depth: usize) -> Vec<MeshEnds<T>> {
    let mut ends: Vec<MeshEnds<T>> = (0..nr_shards)
        .map(|id| MeshEnds {
            id,
            senders: (0..nr_shards).map(|_| None).collect(),
            receivers: (0..nr_shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..nr_shards {
        for to in 0..nr_shards {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(depth.max(1));
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

impl<T: Send + 'static> MeshEnds<T> {
    /// Connects every end on the calling shard's executor. Each connect waits for the other
    /// side's, so all of them are spawned before any is awaited (shards connect in any order).
    pub async fn connect(self) -> (MeshSenders<T>, Vec<(usize, ConnectedReceiver<T>)>) {
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect()).detach()))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .map(|r| r.map(|r| glommio::spawn_local(r.connect()).detach()))
            .collect();
        // A detached task only yields None if its executor is gone: we are on it.
        let mut connected = Vec::with_capacity(senders.len());
        for s in senders {
            connected.push(match s {
                Some(task) => task.await,
                None => None,
            });
        }
        let mut streams = Vec::with_capacity(receivers.len());
        for (from, task) in receivers.into_iter().enumerate() {
            if let Some(task) = task {
                if let Some(r) = task.await {
                    streams.push((from, r));
                }
            }
        }
        (
            MeshSenders {
                id: self.id,
                senders: connected,
            },
            streams,
        )
    }
}

/// This shard's connected senders, one per other shard.
pub struct MeshSenders<T: Send + 'static> {
    id: usize,
    senders: Vec<Option<ConnectedSender<T>>>,
}

impl<T: Send + 'static> MeshSenders<T> {
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn nr_shards(&self) -> usize {
        self.senders.len()
    }

    /// Sends `msg` to shard `to`, waiting while its queue is full. Fails (dropping the message)
    /// if `to` is this shard, out of range, or stopped.
    pub async fn send_to(&self, to: usize, msg: T) -> Result<(), PeerUnavailable> {
        match self.senders.get(to) {
            Some(Some(s)) => s.send(msg).await.map_err(|_| PeerUnavailable(to)),
            _ => Err(PeerUnavailable(to)),
        }
    }

    /// Closes every outgoing channel (the receivers see the end of their streams).
    pub fn close(&self) {
        for s in self.senders.iter().flatten() {
            s.close();
        }
    }
}

/// A cross-shard send found no open channel to the shard: it stopped (only during shutdown), or
/// the index is this shard or out of range (a caller bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerUnavailable(pub usize);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::StreamExt;
    use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

    use super::full_mesh;

    /// Every shard sends to every other and receives one message from each, whatever order
    /// the threads start and connect in; repeated so start-up races get a chance to show.
    #[test]
    fn every_pair_delivers_in_a_full_mesh() {
        const SHARDS: usize = 4;
        for _ in 0..20 {
            let (tx, rx) = crossbeam_channel::bounded(SHARDS);
            for ends in full_mesh::<(usize, usize)>(SHARDS, 4) {
                tx.send(ends).expect("room for every shard");
            }
            let received = Arc::new(AtomicUsize::new(0));
            let seen = received.clone();
            LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(SHARDS))
                .on_all_shards(move || {
                    let ends = rx.try_recv().expect("one set of ends per shard");
                    let seen = seen.clone();
                    async move {
                        let (senders, receivers) = ends.connect().await;
                        let me = senders.id();
                        assert_eq!(senders.nr_shards(), SHARDS);
                        assert_eq!(receivers.len(), SHARDS - 1);
                        assert!(
                            senders.send_to(me, (me, me)).await.is_err(),
                            "no self channel"
                        );
                        for to in (0..SHARDS).filter(|&t| t != me) {
                            senders
                                .send_to(to, (me, to))
                                .await
                                .expect("peer is running");
                        }
                        for (from, mut stream) in receivers {
                            let (f, t) = stream.next().await.expect("one message per peer");
                            assert_eq!((f, t), (from, me), "message arrived on its pair's channel");
                            seen.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
                .expect("pool")
                .join_all();
            assert_eq!(received.load(Ordering::SeqCst), SHARDS * (SHARDS - 1));
        }
    }
}
