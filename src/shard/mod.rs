//! Shard-per-core runtime: one pinned glommio `LocalExecutor` per core, joined by a full mesh of
//! bounded lock-free channels. Every partition lives on exactly one shard; work for it is sent
//! there with `invoke_on(shard_for(topic, partition), ..)` and the answer comes back over a
//! oneshot to the caller's shard.

pub mod mesh;
pub mod runtime;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::LocalBoxFuture;

use crate::config::Config;
use crate::controller::Catalog;
use crate::partition::Partition;
use crate::storage::log::StorageEnv;

/// A unit of work sent to another shard. It runs synchronously on arrival (so work staged by it,
/// such as assigning offsets, happens in the order messages were sent) and returns the rest of
/// its work as a future, which the receiving shard spawns.
pub type ShardMsg = Box<dyn FnOnce(&Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// Process-wide flags shared by all shards (atomics only).
#[derive(Default)]
pub struct Shared {
    pub shutdown: AtomicBool,
    /// Shards that finished draining their connections.
    pub drained: AtomicUsize,
    /// Shards that finished starting (partitions open, listening).
    pub started: AtomicUsize,
}

impl Shared {
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

pub type PartitionKey = (Arc<str>, i32);

pub struct Shard {
    pub id: usize,
    pub nr_shards: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    senders: mesh::MeshSenders<ShardMsg>,
    catalog: RefCell<Arc<Catalog>>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    pub storage: StorageEnv,
    /// Request bytes in flight on this shard's connections (`tidewater.shard.request.memory.bytes`).
    pub request_memory: Rc<glommio::sync::Semaphore>,
    pub connections: Cell<usize>,
    /// Shard 0 only: serialises catalogue changes.
    pub controller_lock: Rc<glommio::sync::Semaphore>,
    /// Shard 0 only: next producer id to hand out.
    pub next_producer_id: Cell<i64>,
    /// Resolved at shutdown; every long wait (parked fetch, idle connection) awaits a clone.
    /// Registering and dropping a waiter is O(1), however many connections wait.
    shutdown_signal: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    shutdown_trigger: RefCell<Option<futures::channel::oneshot::Sender<()>>>,
    /// Open connections per client address, for the addresses this shard owns
    /// (`shard_for_ip`); only kept when `max.connections.per.ip` limits anything.
    ip_connections: RefCell<HashMap<std::net::IpAddr, u32>>,
    /// Consumer groups this shard coordinates (those of its `__consumer_offsets` partitions).
    pub coordinator: crate::coordinator::Coordinator,
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        senders: mesh::MeshSenders<ShardMsg>,
        catalog: Arc<Catalog>,
        storage: StorageEnv,
    ) -> Shard {
        let nr_shards = senders.nr_shards();
        let mem = config.shard_request_memory_bytes as u64;
        let (shutdown_trigger, rx) = futures::channel::oneshot::channel();
        let shutdown_signal = futures::FutureExt::shared(rx);
        Shard {
            id,
            nr_shards,
            shared,
            senders,
            next_producer_id: Cell::new(catalog.producer_id_reserved_end),
            catalog: RefCell::new(catalog),
            partitions: RefCell::new(HashMap::new()),
            storage,
            request_memory: Rc::new(glommio::sync::Semaphore::new(mem)),
            connections: Cell::new(0),
            controller_lock: Rc::new(glommio::sync::Semaphore::new(1)),
            shutdown_signal,
            shutdown_trigger: RefCell::new(Some(shutdown_trigger)),
            ip_connections: RefCell::new(HashMap::new()),
            coordinator: crate::coordinator::Coordinator::new(&config),
            config,
        }
    }

    /// Resolves when this shard starts shutting down (at once if it already has).
    pub async fn until_shutdown(&self) {
        if self.shared.is_shutting_down() {
            return;
        }
        let _ = self.shutdown_signal.clone().await;
    }

    /// The shard that counts connections from `ip` (connections from one address land on every
    /// shard, so one owner keeps the exact count).
    pub fn shard_for_ip(&self, ip: std::net::IpAddr) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut h);
        (h.finish() % self.nr_shards as u64) as usize
    }

    /// On the owner of `ip`: counts one more connection from it unless that reaches `limit`.
    pub fn register_ip_connection(&self, ip: std::net::IpAddr, limit: u32) -> bool {
        let mut m = self.ip_connections.borrow_mut();
        let n = m.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                m.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// On the owner of `ip`: a connection from it closed.
    pub fn unregister_ip_connection(&self, ip: std::net::IpAddr) {
        let mut m = self.ip_connections.borrow_mut();
        if let Some(n) = m.get_mut(&ip) {
            debug_assert!(*n > 0, "connection count for {ip} underflows");
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Called by the shard's main loop once it sees the shutdown flag: ends every long wait.
    pub fn notify_shutdown(&self) {
        if let Some(tx) = self.shutdown_trigger.borrow_mut().take() {
            let _ = tx.send(());
        }
    }

    /// The current catalogue snapshot (cheap: an `Arc` clone).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Installs a newer catalogue snapshot; older ones (reordered messages) are ignored.
    pub fn install_catalog(&self, c: Arc<Catalog>) {
        let mut cur = self.catalog.borrow_mut();
        if c.version >= cur.version {
            *cur = c;
        }
    }

    /// Which shard owns `topic`/`partition`, per the current catalogue.
    pub fn shard_for(&self, topic: &str, partition: i32) -> Option<usize> {
        self.catalog.borrow().shard_for(topic, partition)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let key: PartitionKey = (Arc::from(topic), partition);
        self.partitions.borrow().get(&key).cloned()
    }

    pub fn insert_partition(&self, p: Rc<Partition>) {
        self.partitions
            .borrow_mut()
            .insert((p.topic.clone(), p.index), p);
    }

    pub fn remove_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow_mut()
            .remove(&(Arc::from(topic), partition))
    }

    pub fn all_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Sends a raw message to `target` (which may be this shard). Awaits only while the bounded
    /// queue to `target` is full.
    pub async fn send_to(self: &Rc<Self>, target: usize, msg: ShardMsg) {
        if target == self.id {
            let fut = msg(self);
            glommio::spawn_local(fut).detach();
            return;
        }
        if self.senders.send_to(target, msg).await.is_err() {
            // The peer's executor is gone: only during shutdown.
            tracing::warn!(
                shard = self.id,
                target,
                "cross-shard send failed: peer stopped"
            );
        }
    }

    /// Runs `f` on shard `target` and returns its result here. `f` runs there synchronously on
    /// arrival up to its first await.
    pub async fn invoke_on<F, Fut, R>(self: &Rc<Self>, target: usize, f: F) -> Option<R>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        if target == self.id {
            return Some(f(self.clone()).await);
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let origin = self.id;
        let msg: ShardMsg = Box::new(move |shard: &Rc<Shard>| {
            let fut = f(shard.clone());
            let shard = shard.clone();
            Box::pin(async move {
                let value = fut.await;
                shard.reply_to(origin, tx, value).await;
            })
        });
        self.send_to(target, msg).await;
        rx.await.ok()
    }

    /// Completes `tx`, whose receiver waits on shard `origin`, with `value`. Not by sending on
    /// `tx` here: that wakes the waiting task from this thread, and glommio 0.9's
    /// wake-from-another-thread path frees a waker twice under load (the two-shard abort in
    /// ARCHITECTURE.md). The value rides the mesh back and `tx` completes on `origin`'s own
    /// thread, so no waker crosses threads. (If `origin` has stopped, the message and `tx` are
    /// dropped here: shutdown only.)
    pub async fn reply_to<R: Send + 'static>(
        self: &Rc<Self>,
        origin: usize,
        tx: futures::channel::oneshot::Sender<R>,
        value: R,
    ) {
        if origin == self.id {
            let _ = tx.send(value);
            return;
        }
        let msg: ShardMsg = Box::new(move |_: &Rc<Shard>| {
            let _ = tx.send(value);
            Box::pin(async {})
        });
        self.send_to(origin, msg).await;
    }
}
