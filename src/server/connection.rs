//! One client connection: read frames, dispatch each (in order), let handlers run concurrently,
//! and write responses strictly in request order, as Kafka requires.

use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;

use anyhow::bail;
use bytes::BytesMut;
use futures::future::{select, Either};
use futures_lite::AsyncRead;
use glommio::net::TcpStream;
use glommio::sync::StaticPermit;
use glommio::task::JoinHandle;
use std::os::unix::io::AsRawFd;

use super::dispatch::{self, Dispatched, Response};
use crate::protocol::frame::{split_frame, FrameError};
use crate::protocol::sendmsg::write_all_vectored;
use crate::shard::Shard;

/// Bytes read from the socket at a time when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 * 1024;

enum Wake {
    Read(std::io::Result<usize>),
    Head(Option<Option<Response>>),
    Tick,
}

/// A response being produced: `None` means the request gets no response (acks=0 produce).
/// The flag marks Fetch requests.
type Pending = (JoinHandle<Option<Response>>, bool);

/// Fetch requests a connection has dispatched but not yet written. Fetch responses are the
/// large ones (up to `fetch.max.bytes` read from disk each); at one per connection, a client
/// that pipelines fetches and never reads its socket holds one response, not hundreds. Like
/// Kafka muting a channel until its response is sent, but only for fetches.
const FETCHES_IN_FLIGHT_PER_CONNECTION_MAX: usize = 1;

/// Whether the next frame in `buf` (if its header is there) is a Fetch request.
fn next_is_fetch(buf: &BytesMut) -> bool {
    buf.len() >= 6 && i16::from_be_bytes([buf[4], buf[5]]) == FETCH_API_KEY
}
const FETCH_API_KEY: i16 = 1;

pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let max_frame = shard.config.socket_request_max_bytes;
    let inflight_max = shard.config.queued_max_requests;
    let budget = shard.config.shard_request_memory_bytes.max(1) as u64;
    // Nothing is allocated until the client sends something: thousands of idle connections
    // (a flood) cost no buffer memory (`recv_into` reserves once bytes arrive).
    let mut buf = BytesMut::new();
    let mut inflight: VecDeque<Pending> = VecDeque::new();
    // Memory reserved for the frame being read, so a huge request waits instead of growing RSS.
    let mut frame_permit: Option<StaticPermit> = None;
    let mut needed = 4usize;
    let mut eof = false;
    let mut closing: Option<String> = None;
    loop {
        // Dispatch every complete frame (in order) while there is room in flight.
        let mut fetch_blocked = false;
        while closing.is_none() && inflight.len() < inflight_max && !shard.shared.is_shutting_down()
        {
            let is_fetch = next_is_fetch(&buf);
            if is_fetch
                && inflight.iter().filter(|(_, f)| *f).count()
                    >= FETCHES_IN_FLIGHT_PER_CONNECTION_MAX
            {
                // Write what is ahead first; stop reading meanwhile (the buffer stays bounded).
                fetch_blocked = true;
                break;
            }
            match split_frame(&mut buf, max_frame, &mut needed) {
                Ok(Some(frame)) => {
                    let permit = match frame_permit.take() {
                        Some(p) => p,
                        None => acquire(&shard, (frame.len() as u64).min(budget)).await?,
                    };
                    match dispatch::dispatch(&shard, frame).await {
                        Dispatched::Respond(fut) => {
                            let task = glommio::spawn_local(async move {
                                let r = fut.await;
                                drop(permit);
                                r
                            });
                            inflight.push_back((task.detach(), is_fetch));
                        }
                        Dispatched::Close(why) => closing = Some(why),
                    }
                }
                Ok(None) => {
                    if needed > 4 && frame_permit.is_none() && needed > buf.len() + READ_CHUNK_BYTES
                    {
                        frame_permit = Some(acquire(&shard, (needed as u64).min(budget)).await?);
                    }
                    break;
                }
                Err(FrameError::BadSize(size)) => closing = Some(format!("bad frame size {size}")),
            }
        }
        let stop_reading = eof || closing.is_some() || shard.shared.is_shutting_down();
        if stop_reading && inflight.is_empty() {
            if let Some(why) = closing {
                bail!("closing connection: {why}");
            }
            return Ok(());
        }
        let can_read = !stop_reading && !fetch_blocked && inflight.len() < inflight_max;
        if can_read {
            let want = needed
                .saturating_sub(buf.len())
                .clamp(READ_CHUNK_BYTES, max_frame + 4);
            let read = recv_into(&mut stream, &mut buf, want);
            let wake = match inflight.front_mut() {
                Some((task, _)) => match select(Box::pin(read), task).await {
                    Either::Left((n, _)) => Wake::Read(n),
                    Either::Right((resp, _)) => Wake::Head(resp),
                },
                // Idle: wait for bytes or for shutdown. No timer: thousands of idle
                // connections must not wake (and cancel and resubmit their reads) periodically.
                None => match select(Box::pin(read), Box::pin(shard.until_shutdown())).await {
                    Either::Left((n, _)) => Wake::Read(n),
                    Either::Right(_) => Wake::Tick,
                },
            };
            match wake {
                Wake::Read(Ok(0)) => eof = true,
                Wake::Read(Ok(_)) => {}
                Wake::Read(Err(e)) => return Err(e.into()),
                Wake::Head(resp) => {
                    inflight.pop_front();
                    write_response(&mut stream, resp).await?;
                }
                Wake::Tick => {}
            }
        } else if let Some((task, _)) = inflight.pop_front() {
            let resp = task.await;
            write_response(&mut stream, resp).await?;
        }
    }
}

/// Reads into `buf`'s spare capacity with `recv` (no zero-filling). When the socket is empty
/// it waits with glommio's `poll_read` on a one-byte buffer: that readiness poll lives in the
/// stream, so when this future is dropped (a response won the race, or shutdown) the poll stays
/// armed for the next call instead of being cancelled and resubmitted. (Each io_uring cancel
/// walks a hash bucket of every pending poll: with thousands of connections, one cancel per
/// request was most of the shard's CPU.) Cancel-safe: bytes are only taken synchronously.
/// Nothing is allocated until bytes arrive.
async fn recv_into(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    want: usize,
) -> std::io::Result<usize> {
    loop {
        if buf.capacity() > buf.len() {
            match recv_spare(stream, buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut first = [0u8; 1];
        let n =
            futures::future::poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut first)).await?;
        if n == 0 {
            return Ok(0);
        }
        buf.reserve(want);
        buf.extend_from_slice(&first);
        // Whatever else is there already, without waiting. The byte we have is a valid read
        // either way; an error other than WouldBlock shows up again on the next call.
        return Ok(1 + recv_spare(stream, buf).unwrap_or(0));
    }
}

/// One non-blocking `recv` into `buf`'s spare capacity.
fn recv_spare(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most `spare.len()` bytes into memory we own; we only mark as
    // initialised what it reports written.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            spare.as_mut_ptr() as *mut libc::c_void,
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

async fn acquire(shard: &Rc<Shard>, units: u64) -> anyhow::Result<StaticPermit> {
    shard
        .request_memory
        .acquire_static_permit(units)
        .await
        .map_err(|e| anyhow::anyhow!("request memory semaphore closed: {e}"))
}

async fn write_response(
    stream: &mut TcpStream,
    resp: Option<Option<Response>>,
) -> anyhow::Result<()> {
    match resp {
        // The handler task was cancelled: the executor is stopping.
        None => bail!("handler cancelled"),
        Some(None) => Ok(()),
        Some(Some(r)) => {
            write_all_vectored(stream, &r.parts).await?;
            drop(r.memory);
            Ok(())
        }
    }
}
