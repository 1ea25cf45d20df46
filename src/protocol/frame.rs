//! Request framing: a 4-byte big-endian size, then the request. Frames are split off the
//! connection's read buffer without copying.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Negative size or above `socket.request.max.bytes`: the connection is closed.
    BadSize(i32),
}

/// Returns the next whole frame (without its size prefix) if `buf` holds one.
/// `Ok(None)` means more bytes are needed; `needed` is set to the full frame length so the
/// caller can reserve it (bounded by `max_frame_bytes`).
pub fn split_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
    needed: &mut usize,
) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        *needed = 4;
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    // A request has at least api_key + api_version + correlation_id.
    if size < 8 || size as usize > max_frame_bytes {
        return Err(FrameError::BadSize(size));
    }
    let total = 4 + size as usize;
    if buf.len() < total {
        *needed = total;
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size as usize).freeze()))
}

/// api_key, api_version and correlation_id: the first 8 bytes of every request header, readable
/// even when the rest cannot be decoded (so an error answer can still be correlated).
pub fn peek_request_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_bad_sizes_rejected() {
        let mut b = BytesMut::new();
        let mut needed = 0;
        b.extend_from_slice(&12i32.to_be_bytes());
        b.extend_from_slice(&[1; 6]);
        assert_eq!(split_frame(&mut b, 100, &mut needed), Ok(None));
        assert_eq!(needed, 16);
        b.extend_from_slice(&[2; 8]);
        let f = split_frame(&mut b, 100, &mut needed)
            .expect("ok")
            .expect("frame");
        assert_eq!(f.len(), 12);
        assert_eq!(b.len(), 2);
        let mut neg = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut neg, 100, &mut needed),
            Err(FrameError::BadSize(-5))
        );
        let mut big = BytesMut::from(&1000i32.to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut big, 100, &mut needed),
            Err(FrameError::BadSize(1000))
        );
    }
}
