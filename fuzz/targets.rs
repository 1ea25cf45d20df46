//! The fuzz targets as plain functions, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/`)
//! and by `tests/fuzz_replay.rs`, which replays every corpus file through them in `cargo test`.
//! A target panics (or aborts) only on a bug.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tidewater::protocol::frame::{split_frame, FrameError};
use tidewater::server::dispatch::decode_request;
use tidewater::storage::batch::{self, validate_batches, BATCH_HEADER_LEN};
use tidewater::storage::compression;
use tidewater::storage::segment::{self, Segment};

/// Largest batch the targets accept (the broker's default `message.max.bytes`).
pub const MAX_BATCH_BYTES: usize = 1_048_588;
/// Bound on decompressed record bytes per batch (a decompression bomb is an error, not an OOM).
pub const MAX_DECOMPRESSED_BYTES: usize = 8 << 20;

/// Frame splitting: the input is a byte stream delivered in chunks; the first two bytes pick
/// `socket.request.max.bytes` and the chunk size.
pub fn frame(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max_frame = 8 + (data[0] as usize) * 64;
    let chunk = 1 + (data[1] as usize % 97);
    let stream = &data[2..];
    let mut buf = BytesMut::new();
    let mut needed = 0usize;
    let mut fed = 0usize;
    let mut taken = 0usize;
    loop {
        match split_frame(&mut buf, max_frame, &mut needed) {
            Ok(Some(f)) => {
                assert!(
                    f.len() >= 8 && f.len() <= max_frame,
                    "frame of {} bytes",
                    f.len()
                );
                taken += 4 + f.len();
            }
            Ok(None) => {
                assert!(
                    needed > buf.len(),
                    "needs {needed} with {} buffered",
                    buf.len()
                );
                assert!(
                    needed <= max_frame + 4,
                    "needs {needed} above the frame limit"
                );
                if fed >= stream.len() {
                    break;
                }
                let end = (fed + chunk).min(stream.len());
                buf.extend_from_slice(&stream[fed..end]);
                fed = end;
            }
            Err(FrameError::BadSize(size)) => {
                assert!(
                    size < 8 || size as usize > max_frame,
                    "rejected size {size}"
                );
                return;
            }
        }
    }
    assert_eq!(taken + buf.len(), stream.len());
}

/// Request decoding: header + body for every API key/version we serve, exactly as
/// `server::dispatch` does.
pub fn request(data: &[u8]) {
    let _ = decode_request(Bytes::copy_from_slice(data));
}

/// RecordBatch v2 validation as on produce, then decoding the records of every batch that
/// passed with kafka-protocol's RecordBatchDecoder (every codec, decompression bounded).
/// Also: the same bytes wrapped as the records of a valid batch with each codec.
pub fn batch(data: &[u8]) {
    check_and_decode(data);
    if data.len() > 2 {
        let codec = data[0] as i16 % 5;
        let records = (data[1] as i32 % 8) + 1;
        let b = make_batch(&data[2..], codec, records);
        let hs = validate_batches(&b, MAX_BATCH_BYTES).expect("a batch we framed is valid");
        assert_eq!(hs.len(), 1);
        check_and_decode(&b);
    }
}

fn check_and_decode(data: &[u8]) {
    let Ok(headers) = validate_batches(data, MAX_BATCH_BYTES) else {
        return;
    };
    let total: usize = headers.iter().map(|h| h.size_bytes).sum();
    assert_eq!(total, data.len(), "validated batches cover the payload");
    for h in headers {
        assert!(h.size_bytes >= BATCH_HEADER_LEN);
        let whole = &data[h.position..h.position + h.size_bytes];
        let compression = match h.compression() {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => continue,
        };
        // kafka-protocol 0.18 reserves `records_count` records before decoding any (fixed
        // upstream, kafka-protocol-rs #156): only decode when the count is plausible.
        let Ok(plain) = decompress(
            &mut Bytes::copy_from_slice(&whole[BATCH_HEADER_LEN..]),
            compression,
        ) else {
            continue;
        };
        if h.records_count as usize > plain.len() {
            continue;
        }
        let mut buf = Bytes::copy_from_slice(whole);
        let _ = RecordBatchDecoder::decode_with_custom_compression(
            &mut buf,
            Some(|b: &mut Bytes, c: Compression| decompress(b, c)),
        );
    }
}

/// Decompresses a batch's records section with the broker's bounded decompressor.
pub fn decompress(buf: &mut Bytes, c: Compression) -> anyhow::Result<Bytes> {
    let input = std::mem::take(buf);
    let codec = match c {
        Compression::None => return Ok(input),
        Compression::Gzip => compression::CODEC_GZIP,
        Compression::Snappy => compression::CODEC_SNAPPY,
        Compression::Lz4 => compression::CODEC_LZ4,
        Compression::Zstd => compression::CODEC_ZSTD,
    };
    Ok(Bytes::from(compression::decompress(
        codec,
        &input,
        MAX_DECOMPRESSED_BYTES,
    )?))
}

/// A RecordBatch v2 around `records` (any bytes) with a valid length and CRC.
pub fn make_batch(records: &[u8], codec: i16, count: i32) -> Vec<u8> {
    let mut b = vec![0u8; BATCH_HEADER_LEN];
    b.extend_from_slice(records);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c(&b[batch::CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn crc32c(data: &[u8]) -> u32 {
    // Castagnoli, bitwise (the targets avoid a direct crc32c dependency)
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An in-memory segment file for the recovery scan.
struct MemFile(Bytes);

impl tidewater::storage::io::SegmentFile for MemFile {
    fn write_pages<'a>(
        &'a self,
        _pos: u64,
        _parts: &'a [&'a [u8]],
    ) -> futures::future::LocalBoxFuture<'a, std::io::Result<()>> {
        Box::pin(async { Err(std::io::Error::other("read-only")) })
    }
    fn read(
        &self,
        pos: u64,
        len: usize,
    ) -> futures::future::LocalBoxFuture<'_, std::io::Result<Bytes>> {
        let start = (pos as usize).min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        let b = self.0.slice(start..end);
        Box::pin(async move { Ok(b) })
    }
    fn sync(&self) -> futures::future::LocalBoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn size(&self) -> futures::future::LocalBoxFuture<'_, std::io::Result<u64>> {
        let n = self.0.len() as u64;
        Box::pin(async move { Ok(n) })
    }
    fn truncate(&self, _len: u64) -> futures::future::LocalBoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn allocate(&self, _len: u64) -> futures::future::LocalBoxFuture<'_, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Segment recovery from arbitrary bytes: the recovery scan over a segment file holding `data`
/// (byte 0 picks the expected base offset), then the sparse and time indexes loaded from the
/// same bytes and queried.
pub fn recovery(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let base = (data[0] as i64) * 3 - 1; // -1: any base offset
    let file = MemFile(Bytes::copy_from_slice(&data[1..]));
    let end = (data.len() - 1) as u64;
    let mut last_end = 0u64;
    let mut seen = 0usize;
    let out = futures::executor::block_on(segment::scan(
        &file,
        0,
        end,
        base,
        MAX_BATCH_BYTES,
        segment::ScanReads::Sequential,
        &mut |h, bytes| {
            assert_eq!(h.position as u64, last_end, "batches are contiguous");
            assert_eq!(bytes.len(), h.size_bytes);
            last_end += h.size_bytes as u64;
            seen += 1;
            true
        },
    ))
    .expect("in-memory reads do not fail");
    assert_eq!(
        out.valid_bytes, last_end,
        "valid bytes end at the last good batch"
    );
    assert!(out.valid_bytes <= end);
    assert!(out.stopped.is_some() || out.valid_bytes == end);
    // Small lookup reads see the same batches and stop at the same byte.
    let mut lookup_seen = 0usize;
    let lookup = futures::executor::block_on(segment::scan(
        &file,
        0,
        end,
        base,
        MAX_BATCH_BYTES,
        segment::ScanReads::Lookup(64),
        &mut |_, _| {
            lookup_seen += 1;
            true
        },
    ))
    .expect("in-memory reads do not fail");
    assert_eq!(
        (lookup.valid_bytes, lookup.next_offset, lookup_seen),
        (out.valid_bytes, out.next_offset, seen),
        "both ways of reading agree"
    );
    // index files from the same bytes: split at the middle
    let mid = data.len() / 2;
    let mut seg = Segment::new(base.max(0), 0);
    if seg.load_indexes(&data[..mid], &data[mid..]) {
        for probe in [0i64, 1, base, base + 7, i64::MAX / 2] {
            let _ = seg.position_for(probe);
        }
        let _ = seg.position_for_timestamp(i64::from(data[0]));
    }
}
