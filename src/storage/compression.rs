//! Bounded decompression of a RecordBatch's records section, for the few places the broker
//! must look inside a compressed batch (record-exact ListOffsets by timestamp) and for the fuzz
//! targets. Produce and Fetch never decompress: batches are stored and served as produced.

use std::io::Read;

/// Codec ids from the batch attributes (bits 0..3).
pub const CODEC_NONE: i16 = 0;
pub const CODEC_GZIP: i16 = 1;
pub const CODEC_SNAPPY: i16 = 2;
pub const CODEC_LZ4: i16 = 3;
pub const CODEC_ZSTD: i16 = 4;

/// snappy-java's stream framing, which Java clients write: magic, version, compat, then
/// `[u32 big-endian length][raw snappy block]*`. librdkafka writes a raw block.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

#[derive(Debug)]
pub enum DecompressError {
    UnknownCodec(i16),
    /// The output would exceed the caller's bound (a decompression bomb is an error, not an OOM).
    TooLarge {
        limit_bytes: usize,
    },
    Corrupt(String),
}

impl std::fmt::Display for DecompressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecompressError::UnknownCodec(c) => write!(f, "unknown compression codec {c}"),
            DecompressError::TooLarge { limit_bytes } => {
                write!(f, "decompressed records exceed {limit_bytes} bytes")
            }
            DecompressError::Corrupt(why) => write!(f, "corrupt compressed records: {why}"),
        }
    }
}

impl std::error::Error for DecompressError {}

fn corrupt(e: impl std::fmt::Display) -> DecompressError {
    DecompressError::Corrupt(e.to_string())
}

/// Decompresses `input` (a batch's bytes after the 61-byte header) written with `codec`,
/// producing at most `limit_bytes`.
pub fn decompress(
    codec: i16,
    input: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let take = limit_bytes as u64 + 1;
    match codec {
        CODEC_NONE => out.extend_from_slice(input),
        CODEC_GZIP => {
            flate2::read::GzDecoder::new(input)
                .take(take)
                .read_to_end(&mut out)
                .map_err(corrupt)?;
        }
        CODEC_LZ4 => {
            lz4::Decoder::new(input)
                .map_err(corrupt)?
                .take(take)
                .read_to_end(&mut out)
                .map_err(corrupt)?;
        }
        CODEC_ZSTD => {
            zstd::stream::read::Decoder::new(input)
                .map_err(corrupt)?
                .take(take)
                .read_to_end(&mut out)
                .map_err(corrupt)?;
        }
        CODEC_SNAPPY => {
            let mut blocks: Vec<&[u8]> = Vec::new();
            if input.len() >= XERIAL_HEADER_LEN && &input[..XERIAL_MAGIC.len()] == XERIAL_MAGIC {
                let mut rest = &input[XERIAL_HEADER_LEN..];
                while !rest.is_empty() {
                    let Some(len) = rest.get(..4) else {
                        return Err(corrupt("truncated snappy block length"));
                    };
                    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    let Some(block) = rest.get(4..4 + n) else {
                        return Err(corrupt("truncated snappy block"));
                    };
                    blocks.push(block);
                    rest = &rest[4 + n..];
                }
            } else {
                blocks.push(input);
            }
            for b in blocks {
                let n = snap::raw::decompress_len(b).map_err(corrupt)?;
                if out.len() + n > limit_bytes {
                    return Err(DecompressError::TooLarge { limit_bytes });
                }
                let start = out.len();
                out.resize(start + n, 0);
                let written = snap::raw::Decoder::new()
                    .decompress(b, &mut out[start..])
                    .map_err(corrupt)?;
                out.truncate(start + written);
            }
        }
        other => return Err(DecompressError::UnknownCodec(other)),
    }
    if out.len() > limit_bytes {
        return Err(DecompressError::TooLarge { limit_bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trips_every_codec_and_bounds_output() {
        let plain = sample();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let sn = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend_from_slice(&(sn.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&sn);
        let mut l4 = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        l4.write_all(&plain).unwrap();
        let (l4, r) = l4.finish();
        r.unwrap();
        let zs = zstd::encode_all(&plain[..], 1).unwrap();
        for (codec, data) in [
            (CODEC_GZIP, &gz),
            (CODEC_SNAPPY, &sn),
            (CODEC_SNAPPY, &xerial),
            (CODEC_LZ4, &l4),
            (CODEC_ZSTD, &zs),
        ] {
            assert_eq!(
                decompress(codec, data, plain.len()).unwrap(),
                plain,
                "codec {codec}"
            );
            assert!(
                matches!(
                    decompress(codec, data, plain.len() - 1),
                    Err(DecompressError::TooLarge { .. })
                ),
                "codec {codec} must refuse output past the bound"
            );
            // A truncated stream is an error or (lz4/zstd framing) a strict prefix, never more.
            match decompress(codec, &data[..data.len() / 2], plain.len()) {
                Err(_) => {}
                Ok(part) => assert!(
                    part.len() < plain.len() && plain.starts_with(&part),
                    "codec {codec}: truncated input gave {} bytes",
                    part.len()
                ),
            }
        }
        assert!(matches!(
            decompress(7, &gz, 10),
            Err(DecompressError::UnknownCodec(7))
        ));
    }
}
