//! Storage I/O behind a trait, so the log runs on the real disk (glommio DMA files, O_DIRECT)
//! or on an in-memory backend that injects faults (`mem_io`). Everything is shard-local.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};
use glommio::io::{DmaFile, OpenOptions};

/// O_DIRECT alignment for offsets and lengths of data-file writes.
pub const ALIGN: u64 = 4096;
/// Reads larger than this are split into pieces of this size...
pub(crate) const READ_PIECE_BYTES: usize = 1 << 20;
/// ...with at most this many in flight.
pub(crate) const READS_IN_FLIGHT_MAX: usize = 8;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + ALIGN - 1) & !(ALIGN - 1)
}

/// A segment data file. Writes are whole aligned pages: `parts` are copied back to back into
/// one aligned buffer, zero-padded to a page multiple, and written at `pos` (aligned).
pub trait SegmentFile {
    fn write_pages<'a>(
        &'a self,
        pos: u64,
        parts: &'a [&'a [u8]],
    ) -> LocalBoxFuture<'a, io::Result<()>>;
    /// `write_pages`, durable when it returns (as if followed by `sync`, for these pages).
    /// A round that is one write saves the separate fdatasync's trip through the executor.
    fn write_pages_durable<'a>(
        &'a self,
        pos: u64,
        parts: &'a [&'a [u8]],
    ) -> LocalBoxFuture<'a, io::Result<()>> {
        async move {
            self.write_pages(pos, parts).await?;
            self.sync().await
        }
        .boxed_local()
    }
    /// Writes `len` zero bytes at `pos` (both page-aligned).
    fn write_zeroes(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<()>> {
        async move {
            static ZERO_PAGE: [u8; ALIGN as usize] = [0; ALIGN as usize];
            let pages = vec![&ZERO_PAGE[..]; len.div_ceil(ALIGN as usize)];
            self.write_pages(pos, &pages).await
        }
        .boxed_local()
    }
    /// Reads up to `len` bytes at `pos` (fewer at end of file), copied into ordinary `Bytes`
    /// that may cross shards.
    fn read(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>>;
    fn sync(&self) -> LocalBoxFuture<'_, io::Result<()>>;
    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>>;
    fn truncate(&self, len: u64) -> LocalBoxFuture<'_, io::Result<()>>;
    /// Reserves blocks up to `len` bytes (extends the file size), so later writes inside it
    /// need no size change and fdatasync need not commit a new size each time.
    fn allocate(&self, len: u64) -> LocalBoxFuture<'_, io::Result<()>>;
}

/// A shard's storage backend: opens data files and keeps small metadata files.
///
/// Removing files and replacing small ones are futures: on the real disk an unlink of a large
/// segment or an fsync of an index takes milliseconds (tens under load), and running them on
/// the shard's thread would stall every partition and connection it serves. Calls made one
/// after another on a shard take effect in that order.
pub trait StorageIo {
    /// Opens (creating if missing) a data file for reading and writing.
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>>;
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file; a missing one is not an error.
    fn remove_file(&self, path: &Path) -> LocalBoxFuture<'static, io::Result<()>>;
    /// Removes a directory and everything in it; a missing one is not an error.
    fn remove_dir_all(&self, dir: &Path) -> LocalBoxFuture<'static, io::Result<()>>;
    /// Renames a file, replacing `to`, durably (directory fsync) before it returns.
    fn rename(&self, from: &Path, to: &Path) -> LocalBoxFuture<'static, io::Result<()>>;
    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replaces a small file atomically (temp file, fsync, rename, directory fsync).
    fn write_small(&self, path: &Path, data: &[u8]) -> LocalBoxFuture<'static, io::Result<()>>;
}

/// Runs blocking filesystem work on the shard's blocking thread (glommio keeps one per
/// executor and serves it in order), so the executor goes on serving meanwhile.
fn off_shard<R: Send + 'static>(
    f: impl FnOnce() -> io::Result<R> + Send + 'static,
) -> LocalBoxFuture<'static, io::Result<R>> {
    glommio::executor().spawn_blocking(f).boxed_local()
}

fn ignore_not_found(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

struct DmaSegment {
    file: DmaFile,
    path: PathBuf,
    /// The same file opened O_DSYNC (lazily): a write through it is durable on completion.
    dsync: std::cell::OnceCell<DmaFile>,
}

/// Copies `parts` into one aligned DMA buffer (zero-padded to a page) and writes it at `pos`.
async fn write_parts(file: &DmaFile, pos: u64, parts: &[&[u8]]) -> io::Result<()> {
    debug_assert_eq!(pos % ALIGN, 0, "O_DIRECT writes start on a page");
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let padded = align_up(len as u64) as usize;
    let mut buf = file.alloc_dma_buffer(padded);
    let dst = buf.as_bytes_mut();
    let mut at = 0;
    for p in parts {
        dst[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    dst[at..].fill(0);
    write_buffer(file, buf, pos).await
}

/// Writes a whole aligned DMA buffer at `pos`; a short write is an error.
async fn write_buffer(file: &DmaFile, buf: glommio::io::DmaBuffer, pos: u64) -> io::Result<()> {
    let len = buf.len();
    let written = file.write_at(buf, pos).await.map_err(to_io)?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write {written} of {len}"),
        ));
    }
    Ok(())
}

impl SegmentFile for DmaSegment {
    fn write_pages<'a>(
        &'a self,
        pos: u64,
        parts: &'a [&'a [u8]],
    ) -> LocalBoxFuture<'a, io::Result<()>> {
        write_parts(&self.file, pos, parts).boxed_local()
    }

    fn write_pages_durable<'a>(
        &'a self,
        pos: u64,
        parts: &'a [&'a [u8]],
    ) -> LocalBoxFuture<'a, io::Result<()>> {
        async move {
            if self.dsync.get().is_none() {
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .dma_open(&self.path)
                    .await
                    .map_err(to_io)?;
                let _ = self.dsync.set(f);
            }
            let f = self.dsync.get().expect("opened above");
            write_parts(f, pos, parts).await
        }
        .boxed_local()
    }

    fn write_zeroes(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<()>> {
        async move {
            debug_assert_eq!(pos % ALIGN, 0, "O_DIRECT writes start on a page");
            let mut buf = self.file.alloc_dma_buffer(align_up(len as u64) as usize);
            buf.as_bytes_mut().fill(0);
            write_buffer(&self.file, buf, pos).await
        }
        .boxed_local()
    }

    fn read(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>> {
        async move {
            if len <= READ_PIECE_BYTES {
                let r = self.file.read_at(pos, len).await.map_err(to_io)?;
                return Ok(Bytes::copy_from_slice(&r));
            }
            // A large read (recovery scans, cold fetches) goes out as pieces with several in
            // flight, as the disk's read ceiling is measured; they are copied in order into one
            // buffer (the copy out of DMA memory happens anyway). A short piece is end of file.
            let pieces = (0..len.div_ceil(READ_PIECE_BYTES)).map(|i| {
                let at = pos + (i * READ_PIECE_BYTES) as u64;
                let want = READ_PIECE_BYTES.min(len - i * READ_PIECE_BYTES);
                async move { (want, self.file.read_at(at, want).await) }
            });
            let mut reads = futures::stream::iter(pieces).buffered(READS_IN_FLIGHT_MAX);
            let mut out = bytes::BytesMut::with_capacity(len);
            while let Some((want, r)) = reads.next().await {
                let r = r.map_err(to_io)?;
                out.extend_from_slice(&r);
                if r.len() < want {
                    break;
                }
            }
            Ok(out.freeze())
        }
        .boxed_local()
    }

    fn sync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        async move { self.file.fdatasync().await.map_err(to_io) }.boxed_local()
    }

    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>> {
        async move { self.file.file_size().await.map_err(to_io) }.boxed_local()
    }

    fn truncate(&self, len: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        async move { self.file.truncate(len).await.map_err(to_io) }.boxed_local()
    }

    fn allocate(&self, len: u64) -> LocalBoxFuture<'_, io::Result<()>> {
        async move { self.file.pre_allocate(len, false).await.map_err(to_io) }.boxed_local()
    }
}

/// The real disk through glommio DMA files (O_DIRECT, io_uring).
pub struct DmaIo;

impl DmaIo {
    /// Works around glommio #605/#670 on this kind of disk: the first DMA read on a device must
    /// hit a non-empty file, or glommio caches a wrong "iopoll supported" and later reads fail
    /// with EOPNOTSUPP. Call once per executor before opening segments.
    ///
    /// Every shard primes itself at start (glommio keeps the result per thread), possibly at
    /// the same moment: the file is made whole under a name of this thread's own and renamed
    /// into place, so no shard can read it empty or half-written (rewritten in place, one
    /// shard could truncate it under another's probe).
    pub async fn prime(data_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let path: PathBuf = data_dir.join(".tidewater-prime");
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < ALIGN {
            let thread: String = format!("{:?}", std::thread::current().id())
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let tmp = data_dir.join(format!(".tidewater-prime.{}.{thread}", std::process::id()));
            std::fs::write(&tmp, vec![0x5au8; ALIGN as usize])?;
            std::fs::rename(&tmp, &path)?;
        }
        let f = DmaFile::open(&path).await.map_err(to_io)?;
        let _ = f.read_at(0, ALIGN as usize).await.map_err(to_io)?;
        f.close().await.map_err(to_io)?;
        Ok(())
    }
}

impl StorageIo for DmaIo {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(path)
                .await
                .map_err(to_io)?;
            Ok(Rc::new(DmaSegment {
                file,
                path: path.to_path_buf(),
                dsync: std::cell::OnceCell::new(),
            }) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn remove_file(&self, path: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let path = path.to_path_buf();
        off_shard(move || ignore_not_found(std::fs::remove_file(path)))
    }

    fn remove_dir_all(&self, dir: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let dir = dir.to_path_buf();
        off_shard(move || ignore_not_found(std::fs::remove_dir_all(dir)))
    }

    fn rename(&self, from: &Path, to: &Path) -> LocalBoxFuture<'static, io::Result<()>> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        off_shard(move || {
            std::fs::rename(&from, &to)?;
            if let Some(dir) = to.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
    }

    fn read_small(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_small(&self, path: &Path, data: &[u8]) -> LocalBoxFuture<'static, io::Result<()>> {
        let path = path.to_path_buf();
        let data = data.to_vec();
        // One temp name per target is safe: this shard's blocking thread runs these one at a
        // time, and no other shard owns files in this partition's directory.
        off_shard(move || {
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
    }
}
