//! One vectored `sendmsg` per response: header and stored batch `Bytes` go out without being
//! copied into one buffer. glommio's `TcpStream` has no vectored write (see
//! shared notes), so we call `sendmsg` on its fd and fall back to glommio's `write` (which
//! waits for writability) on EAGAIN.

use std::os::unix::io::AsRawFd;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

/// iovecs per `sendmsg` call; longer responses take several calls (bounded by IOV_MAX).
const IOVECS_PER_CALL_MAX: usize = 64;

/// Writes every byte of `parts`, in order.
pub async fn write_all_vectored(stream: &mut TcpStream, parts: &[Bytes]) -> std::io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    while idx < parts.len() {
        if parts[idx].len() == off {
            idx += 1;
            off = 0;
            continue;
        }
        let mut iov: Vec<libc::iovec> =
            Vec::with_capacity(IOVECS_PER_CALL_MAX.min(parts.len() - idx));
        for (i, p) in parts[idx..].iter().enumerate().take(IOVECS_PER_CALL_MAX) {
            let start = if i == 0 { off } else { 0 };
            if p.len() > start {
                iov.push(libc::iovec {
                    iov_base: p[start..].as_ptr() as *mut libc::c_void,
                    iov_len: p.len() - start,
                });
            }
        }
        // SAFETY: msghdr points at iovecs borrowed from `parts`, which outlive the call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(
                stream.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock => {
                    // Let glommio wait for writability; it sends at least one byte in order.
                    let n = stream.write(&parts[idx][off..]).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    off += n;
                }
                std::io::ErrorKind::Interrupted => {}
                _ => return Err(err),
            }
            continue;
        }
        let mut sent = sent as usize;
        while sent > 0 && idx < parts.len() {
            let left = parts[idx].len() - off;
            if sent >= left {
                sent -= left;
                idx += 1;
                off = 0;
            } else {
                off += sent;
                sent = 0;
            }
        }
    }
    Ok(())
}
