//! Topic catalogue and its durable file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Producer ids are reserved in blocks so a restart never hands one out twice.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionMeta {
    /// The shard that owns this partition.
    pub shard: usize,
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionMeta>,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    /// Incremented on every change; shards keep the highest version they have seen.
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this may have been handed out.
    pub producer_id_reserved_end: i64,
}

impl Catalog {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("__cluster").join("catalog.json")
    }

    /// Loads the catalogue (empty when the broker starts for the first time) and fixes placements
    /// that name a shard we no longer have (the core count changed).
    pub fn load(data_dir: &Path, nr_shards: usize) -> anyhow::Result<Catalog> {
        let path = Catalog::path(data_dir);
        let mut cat = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut changed = false;
        for t in cat.topics.values_mut() {
            for (i, p) in t.partitions.iter_mut().enumerate() {
                if p.shard >= nr_shards {
                    p.shard = i % nr_shards;
                    changed = true;
                }
            }
        }
        if changed {
            cat.version += 1;
            cat.store(data_dir)?;
        }
        Ok(cat)
    }

    /// Writes the catalogue durably: temp file, fsync, rename, fsync of the directory.
    /// Rare (topic changes, producer-id blocks), so plain blocking I/O on shard 0 is acceptable.
    pub fn store(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Catalog::path(data_dir);
        let dir = path.parent().expect("catalog path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("catalog.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    pub fn shard_for(&self, topic: &str, partition: i32) -> Option<usize> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .map(|p| p.shard)
    }

    /// Places `count` new partitions on the least-loaded shards (ties: lowest shard id, starting
    /// after the topic's previous partition so one topic spreads across shards).
    pub fn place(&self, count: usize, nr_shards: usize) -> Vec<usize> {
        let mut load = vec![0usize; nr_shards];
        for t in self.topics.values() {
            for p in &t.partitions {
                if p.shard < nr_shards {
                    load[p.shard] += 1;
                }
            }
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let s = (0..nr_shards)
                .min_by_key(|s| (load[*s], *s))
                .expect("at least one shard");
            load[s] += 1;
            out.push(s);
        }
        out
    }

    pub fn snapshot(&self) -> Arc<Catalog> {
        Arc::new(self.clone())
    }
}

/// Kafka's legal topic names: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("topic name length {} must be 1..=249", name.len()));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!(
            "topic name {name:?} has characters outside [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::load(dir.path(), 2).expect("load");
        let shards = c.place(8, 2);
        assert_eq!(shards.iter().filter(|s| **s == 0).count(), 4);
        c.topics.insert(
            "a".into(),
            TopicMeta {
                name: "a".into(),
                id: uuid::Uuid::new_v4(),
                partitions: shards
                    .iter()
                    .map(|s| PartitionMeta {
                        shard: *s,
                        leader_epoch: 0,
                    })
                    .collect(),
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        c.store(dir.path()).expect("store");
        let back = Catalog::load(dir.path(), 2).expect("reload");
        assert_eq!(back, c);
        let fewer = Catalog::load(dir.path(), 1).expect("reload with one shard");
        assert!(fewer.topics["a"].partitions.iter().all(|p| p.shard == 0));
        assert!(validate_topic_name("ok.topic-1_x").is_ok());
        assert!(validate_topic_name("bad/name").is_err());
    }
}
