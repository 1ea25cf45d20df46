//! In-memory storage backend with fault injection, for tests. Each file keeps what a crash
//! would keep (`durable`: bytes as of the last sync) apart from what reads see now (`data`).
//! `MemFs::crash` throws the unsynced part away (an unsynced overwrite reverts to the older
//! bytes), tears it, or replaces it with garbage.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use rand::{Rng, RngCore};

use super::io::{align_up, SegmentFile, StorageIo, ALIGN};

#[derive(Default)]
struct MemFile {
    data: RefCell<Vec<u8>>,
    durable: RefCell<Vec<u8>>,
}

/// What survives a simulated power loss beyond the synced bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced bytes survive.
    Drop,
    /// A random prefix of the unsynced bytes survives.
    Torn,
    /// The unsynced bytes are replaced by random garbage of random length.
    Garbage,
}

#[derive(Default)]
pub struct MemFs {
    files: RefCell<BTreeMap<PathBuf, Rc<MemFile>>>,
    /// Small files are written atomically and durably (temp + fsync + rename).
    small: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
    dirs: RefCell<std::collections::BTreeSet<PathBuf>>,
    pub fail_next_write: Cell<bool>,
    pub fail_next_sync: Cell<bool>,
    /// Bumped by `crash`: handles from before it (the "dead process") fail every operation,
    /// so a test may recover on the same executor while the old log's tasks wind down.
    generation: Cell<u64>,
    /// Writes issued so far: picks how long each stays in flight (deterministic per run).
    writes: Cell<u64>,
}

impl MemFs {
    pub fn new() -> Rc<MemFs> {
        Rc::new(MemFs::default())
    }

    /// Simulates power loss on every data file.
    pub fn crash(&self, mode: CrashMode, rng: &mut impl RngCore) {
        // Injected faults belong to the run that crashed.
        self.fail_next_write.set(false);
        self.fail_next_sync.set(false);
        self.generation.set(self.generation.get() + 1);
        for f in self.files.borrow().values() {
            let durable = f.durable.borrow().clone();
            let data = f.data.borrow().clone();
            // Everything from the first byte that differs from the synced image was written
            // since the last sync: an extension, or an overwrite of older bytes (a recycled
            // segment file), which a crash reverts to those older bytes where it drops it.
            let first = durable
                .iter()
                .zip(&data)
                .position(|(a, b)| a != b)
                .unwrap_or(durable.len().min(data.len()));
            let mut after = durable.clone();
            if first < data.len() {
                let unsynced = data.len() - first;
                match mode {
                    CrashMode::Drop => {}
                    CrashMode::Torn => {
                        let keep = first + rng.gen_range(0..=unsynced);
                        after = data[..keep].to_vec();
                        after.extend_from_slice(durable.get(keep..).unwrap_or_default());
                    }
                    CrashMode::Garbage => {
                        let n = rng.gen_range(0..=unsynced.max(64));
                        let mut g = vec![0u8; n];
                        rng.fill_bytes(&mut g);
                        after = durable[..first].to_vec();
                        after.extend_from_slice(&g);
                        after.extend_from_slice(durable.get(first + n..).unwrap_or_default());
                    }
                }
            }
            *f.data.borrow_mut() = after.clone();
            *f.durable.borrow_mut() = after;
        }
    }

    /// Direct access for tests that damage files.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.files
            .borrow()
            .get(path)
            .map(|f| f.data.borrow().clone())
    }

    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        if let Some(f) = self.files.borrow().get(path) {
            *f.durable.borrow_mut() = bytes.clone();
            *f.data.borrow_mut() = bytes;
        }
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.files
            .borrow()
            .keys()
            .cloned()
            .chain(self.small.borrow().keys().cloned())
            .collect()
    }

    pub fn remove_small(&self, path: &Path) {
        self.small.borrow_mut().remove(path);
    }

    fn check_live(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation.get() {
            Ok(())
        } else {
            Err(io::Error::other("handle from before a simulated crash"))
        }
    }
}

struct MemSegment {
    fs: Rc<MemFs>,
    file: Rc<MemFile>,
    generation: u64,
}

impl SegmentFile for MemSegment {
    fn write_pages<'a>(
        &'a self,
        pos: u64,
        parts: &'a [&'a [u8]],
    ) -> LocalBoxFuture<'a, io::Result<()>> {
        async move {
            assert_eq!(pos % ALIGN, 0, "O_DIRECT writes start on a page");
            // A write is in flight for a while: other tasks (flusher, zeroer) run meanwhile and
            // writes complete out of order, as on a disk, so races between writes can show.
            let n = self.fs.writes.get();
            self.fs.writes.set(n + 1);
            let turns = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) as u32;
            for _ in 0..turns {
                futures_lite::future::yield_now().await;
            }
            self.fs.check_live(self.generation)?;
            if self.fs.fail_next_write.replace(false) {
                return Err(io::Error::other("injected write failure"));
            }
            let len: usize = parts.iter().map(|p| p.len()).sum();
            let padded = align_up(len as u64) as usize;
            let mut data = self.file.data.borrow_mut();
            let end = pos as usize + padded;
            if data.len() < end {
                data.resize(end, 0);
            }
            let mut at = pos as usize;
            for p in parts {
                data[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            data[at..end].fill(0);
            Ok(())
        }
        .boxed_local()
    }

    fn read(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>> {
        async move {
            let data = self.file.data.borrow();
            let start = (pos as usize).min(data.len());
            let end = (start + len).min(data.len());
            Ok(Bytes::copy_from_slice(&data[start..end]))
        }
        .boxed_local()
    }

    fn sync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        async move {
            self.fs.check_live(self.generation)?;
            if self.fs.fail_next_sync.replace(false) {
                return Err(io::Error::other("injected fsync failure"));
            }
            *self.file.durable.borrow_mut() = self.file.data.borrow().clone();
            Ok(())
        }
        .boxed_local()
    }

    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>> {
        async move { Ok(self.file.data.borrow().len() as u64) }.boxed_local()
    }

    fn allocate(&self, _len: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        // Allocation changes no content: unwritten space reads as absent here and as zeros on
        // disk, and recovery treats both as the end of the log.
        async { Ok(()) }.boxed_local()
    }

    fn truncate(&self, len: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        async move {
            self.fs.check_live(self.generation)?;
            self.file.data.borrow_mut().truncate(len as usize);
            let mut d = self.file.durable.borrow_mut();
            if d.len() > len as usize {
                d.truncate(len as usize);
            }
            Ok(())
        }
        .boxed_local()
    }
}

/// `StorageIo` over a shared `MemFs`, for one "process" (until the next `MemFs::crash`).
pub struct MemIo(Rc<MemFs>, u64);

impl MemIo {
    pub fn new(fs: Rc<MemFs>) -> MemIo {
        let generation = fs.generation.get();
        MemIo(fs, generation)
    }

    /// Metadata operations take effect after a yield, as on the real disk where they run on
    /// another thread: other tasks run first, and a crash meanwhile loses them.
    fn after_yield(
        &self,
        effect: impl FnOnce(&MemFs) + 'static,
    ) -> LocalBoxFuture<'static, io::Result<()>> {
        let (fs, generation) = (self.0.clone(), self.1);
        async move {
            futures_lite::future::yield_now().await;
            fs.check_live(generation)?;
            effect(&fs);
            Ok(())
        }
        .boxed_local()
    }
}

impl StorageIo for MemIo {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            self.0.check_live(self.1)?;
            let file = self
                .0
                .files
                .borrow_mut()
                .entry(path.to_path_buf())
                .or_default()
                .clone();
            Ok(Rc::new(MemSegment {
                fs: self.0.clone(),
                file,
                generation: self.1,
            }) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let names = self
            .0
            .paths()
            .into_iter()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.dirs.borrow_mut().insert(dir.to_path_buf());
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let path = path.to_path_buf();
        self.after_yield(move |fs| {
            fs.files.borrow_mut().remove(&path);
            fs.small.borrow_mut().remove(&path);
        })
    }

    fn remove_dir_all(&self, dir: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let dir = dir.to_path_buf();
        self.after_yield(move |fs| {
            fs.files.borrow_mut().retain(|p, _| !p.starts_with(&dir));
            fs.small.borrow_mut().retain(|p, _| !p.starts_with(&dir));
            fs.dirs.borrow_mut().retain(|p| !p.starts_with(&dir));
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        // Durable at once: the real one syncs the directory before it returns.
        self.after_yield(move |fs| {
            let file = fs.files.borrow_mut().remove(&from);
            if let Some(f) = file {
                fs.files.borrow_mut().insert(to, f);
            }
        })
    }

    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.0.small.borrow().get(path).cloned())
    }

    fn write_small(&self, path: &Path, data: &[u8]) -> LocalBoxFuture<'static, io::Result<()>> {
        let (path, data) = (path.to_path_buf(), data.to_vec());
        self.after_yield(move |fs| {
            fs.small.borrow_mut().insert(path, data);
        })
    }
}
