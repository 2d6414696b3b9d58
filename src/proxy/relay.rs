//! The byte relay of one TCP session: both directions at once, half-close, idle timeout.
//!
//! Bytes are copied in order, never dropped: a direction ends only at end of stream
//! (the peer's FIN, which is passed on as a FIN to the other side while the other
//! direction keeps flowing) or at an error. Relay buffers are taken from a
//! per-thread pool only while a side has data to read and given back as soon as
//! it has none, so an idle session holds no buffer. Once a read fills a whole
//! buffer (bulk traffic), the burst goes on through a pooled pipe with
//! `splice(2)` instead (see `splice`). This file owns no policy:
//! which backend, limits and logging live in `tcp.rs`.
//!
//! Every loop here spends the task's cooperative budget once per round: the
//! readiness waits and the reads that never wait do not spend it when they
//! find data, so without that a direction that always finds data and can
//! always write would never yield and would starve its whole worker.
//!
//! A session cut from outside (idle timeout, drain deadline, backend down)
//! while a direction that has not ended still has bytes on their way is reset
//! on both sides, never closed with a FIN that would make a truncated stream
//! look complete. A direction that has ended already passed its FIN on after
//! its last byte, so what the kernel still holds for it is delivered whole.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use socket2::SockRef;

use crate::proxy::activity::{Activity, Way};
use crate::proxy::buffer_pool::PooledBuffer;
use crate::proxy::socket_queues::{bytes_moved, unread_bytes, unsent_bytes};
use crate::proxy::splice::PooledPipe;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::task::coop::consume_budget;
use tokio_util::io::poll_read_buf;

/// How a relayed session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Both sides closed; the client closed its side first.
    ClientClosed,
    /// Both sides closed; the backend closed its side first.
    BackendClosed,
    /// A read or write on the client's socket failed (e.g. reset).
    ClientError,
    /// A read or write on the backend's socket failed (e.g. reset).
    BackendError,
    /// No byte moved either way (read or written) for the idle timeout.
    IdleTimeout,
    /// The process stopped waiting for open sessions.
    Shutdown,
    /// The backend was marked down and its sessions closed (`close_on_down`).
    BackendDown,
}

impl SessionEnd {
    /// Whether the session was cut from outside rather than ended by its peers.
    pub fn is_cut(self) -> bool {
        matches!(
            self,
            SessionEnd::IdleTimeout | SessionEnd::Shutdown | SessionEnd::BackendDown
        )
    }

    /// Whether `access_log = "errors"` logs it.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            SessionEnd::ClientError | SessionEnd::BackendError | SessionEnd::BackendDown
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::BackendClosed => "backend_closed",
            SessionEnd::ClientError => "client_error",
            SessionEnd::BackendError => "backend_error",
            SessionEnd::IdleTimeout => "idle_timeout",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::BackendDown => "backend_down",
        }
    }
}

/// Bytes moved by a session, by direction, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Client to backend.
    pub bytes_up: u64,
    /// Backend to client.
    pub bytes_down: u64,
    pub end: SessionEnd,
}

/// Which socket of the session an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

/// Relays between `client` and `backend` until both have closed, one fails,
/// `idle` passes with no bytes moved either way, or `stop` completes (with the
/// reason the session is being closed). `stop` comes pinned by the caller, and
/// each direction's state is built here and lent to its pump: an `async fn`
/// stores an argument it holds across an await twice (rust-lang/rust#62958),
/// and every idle session would pay for both copies. A cut session with bytes still on
/// their way in a direction that has not ended is set to reset both sockets
/// when they are closed (see `in_flight`). Bytes are also added, as they move, to
/// `totals` (client to backend, backend to client), so long sessions show up in
/// the metrics while they last.
pub async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    idle: Duration,
    stop: Pin<&mut impl Future<Output = SessionEnd>>,
    totals: (&AtomicU64, &AtomicU64),
) -> RelayOutcome {
    let activity = Activity::new();
    let (bytes_up, bytes_down) = (AtomicU64::new(0), AtomicU64::new(0));
    let fds = (client.as_raw_fd(), backend.as_raw_fd());
    // Both sockets stay open until this function returns.
    let kernel_moved = move || bytes_moved(fds.0).wrapping_add(bytes_moved(fds.1));
    let end = {
        let (client_in, client_out) = client.split();
        let (backend_in, backend_out) = backend.split();
        // Each future is built in place and lent pinned: moving futures into
        // another future would keep a second copy of each in the session's
        // task, which every idle session pays for.
        let mut up = Direction {
            from: client_in,
            to: backend_out,
            counts: [&bytes_up, totals.0],
            activity: &activity,
            way: Way::Up,
        };
        let mut down = Direction {
            from: backend_in,
            to: client_out,
            counts: [&bytes_down, totals.1],
            activity: &activity,
            way: Way::Down,
        };
        let idle_timeout = pin!(activity.idle_for(idle, kernel_moved));
        until_ended(pin!(up.pump()), pin!(down.pump()), idle_timeout, stop).await
    };
    let cut_mid_stream = in_flight(&activity, Way::Up, client, backend)
        || in_flight(&activity, Way::Down, backend, client);
    if end.is_cut() && cut_mid_stream {
        abort(client, Side::Client);
        abort(backend, Side::Backend);
    }
    RelayOutcome {
        bytes_up: bytes_up.load(Ordering::Relaxed),
        bytes_down: bytes_down.load(Ordering::Relaxed),
        end,
    }
}

/// Runs both directions until the session ends; returns how.
async fn until_ended(
    mut up: Pin<&mut impl Future<Output = Result<(), Side>>>,
    mut down: Pin<&mut impl Future<Output = Result<(), Side>>>,
    mut idle_timeout: Pin<&mut impl Future<Output = ()>>,
    mut stop: Pin<&mut impl Future<Output = SessionEnd>>,
) -> SessionEnd {
    let (mut up_done, mut down_done) = (false, false);
    let mut first_close = None;
    loop {
        let finished = tokio::select! {
            r = up.as_mut(), if !up_done => { up_done = true; r.map(|()| SessionEnd::ClientClosed) }
            r = down.as_mut(), if !down_done => { down_done = true; r.map(|()| SessionEnd::BackendClosed) }
            () = idle_timeout.as_mut() => return SessionEnd::IdleTimeout,
            end = stop.as_mut() => return end,
        };
        match finished {
            Err(Side::Client) => return SessionEnd::ClientError,
            Err(Side::Backend) => return SessionEnd::BackendError,
            Ok(closed) => {
                // The first side to close names the outcome; the other way keeps flowing.
                let first = *first_close.get_or_insert(closed);
                if up_done && down_done {
                    return first;
                }
            }
        }
    }
}

/// Whether `way` (reading `from`, writing `to`) still had bytes on their way
/// when the session ended: it has not reached end of stream, and it held bytes
/// it had read, or `from` has bytes it has not read, or `to` has bytes its
/// peer has not acknowledged.
fn in_flight(activity: &Activity, way: Way, from: &TcpStream, to: &TcpStream) -> bool {
    !activity.has_ended(way)
        && (activity.is_holding(way) || unread_bytes(from) > 0 || unsent_bytes(to) > 0)
}

/// One direction of a session: the socket it reads, the one it writes, and
/// where it counts what it moved.
struct Direction<'a> {
    from: ReadHalf<'a>,
    to: WriteHalf<'a>,
    counts: [&'a AtomicU64; 2],
    activity: &'a Activity,
    way: Way,
}

/// How a burst of reads ended.
enum Burst {
    /// Nothing more to read for now.
    Drained,
    /// End of stream.
    Ended,
    /// A read filled a whole buffer: bulk traffic, carry on with this pipe.
    Bulk(PooledPipe),
}

impl Direction<'_> {
    /// Moves this direction's bytes until end of stream, then passes the FIN on.
    async fn pump(&mut self) -> Result<(), Side> {
        loop {
            consume_budget().await;
            if read_ready(self.from.as_ref()).await.is_err() {
                return Err(self.read_failed());
            }
            let burst = match self.copy_burst().await? {
                Burst::Bulk(pipe) => self.splice_burst(pipe).await?,
                other => other,
            };
            if let Burst::Ended = burst {
                self.end_of_stream();
                return Ok(());
            }
        }
    }

    /// Copies through a pooled buffer until the socket is drained, the stream
    /// ends, or the traffic proves bulk (and a pipe is free). A read that finds
    /// the task's budget spent ends the burst as drained too; `pump` then
    /// yields before the next one.
    ///
    /// The buffer goes back to the pool when the burst ends; it is held across
    /// an await only while a write waits for the peer to take the data.
    async fn copy_burst(&mut self) -> Result<Burst, Side> {
        let mut buf = PooledBuffer::take();
        loop {
            buf.clear();
            let n = match read_now(&mut self.from, &mut buf) {
                // The runtime's readiness was stale: nothing to read after all.
                // A buffer never waits for data; it goes back to the pool.
                Poll::Pending => return Ok(Burst::Drained),
                Poll::Ready(Ok(0)) => return Ok(Burst::Ended),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(_)) => return Err(self.read_failed()),
            };
            self.activity.touch();
            self.write_out(&buf).await?;
            if n < buf.capacity() {
                return Ok(Burst::Drained);
            }
            if let Some(pipe) = PooledPipe::take() {
                return Ok(Burst::Bulk(pipe));
            }
        }
    }

    /// Moves bytes socket → pipe → socket with `splice(2)` until the socket is
    /// drained or the stream ends, then gives the (empty) pipe back; after an
    /// error, the pipe is closed with the session's bytes still in it.
    async fn splice_burst(&mut self, mut pipe: PooledPipe) -> Result<Burst, Side> {
        let (from, to) = (self.from.as_ref(), self.to.as_ref());
        let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
        loop {
            consume_budget().await;
            // The pipe is empty here: every fill is passed on before the next.
            let filled = match from.try_io(Interest::READABLE, || pipe.fill_from(from_fd)) {
                Ok(filled) => filled,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pipe.give_back();
                    return Ok(Burst::Drained);
                }
                Err(_) => return Err(self.read_failed()),
            };
            if filled == 0 {
                pipe.give_back();
                return Ok(Burst::Ended);
            }
            self.activity.touch();
            self.activity.hold(self.way);
            while pipe.pending() > 0 {
                if write_ready(to).await.is_err() {
                    return Err(self.write_failed());
                }
                match to.try_io(Interest::WRITABLE, || pipe.drain_to(to_fd)) {
                    Ok(n) => {
                        self.activity.touch();
                        self.count(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(self.write_failed()),
                }
            }
            self.activity.release(self.way);
        }
    }

    /// Writes all of `bytes`, each write that takes some of them counting as
    /// activity: a slow but steady reader keeps the session alive.
    async fn write_out(&mut self, mut bytes: &[u8]) -> Result<(), Side> {
        self.activity.hold(self.way);
        while !bytes.is_empty() {
            match self.to.write(bytes).await {
                Ok(0) | Err(_) => return Err(self.write_failed()),
                Ok(n) => {
                    self.activity.touch();
                    self.count(n);
                    bytes = &bytes[n..];
                }
            }
        }
        self.activity.release(self.way);
        Ok(())
    }

    fn count(&self, bytes: usize) {
        for count in self.counts {
            count.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// End of stream: half-close towards the other side, which may still
    /// answer. After the second end of stream both sockets are closed at once
    /// (both read to the end, so each peer gets a FIN).
    fn end_of_stream(&self) {
        if self.activity.end(self.way) {
            let _ = SockRef::from(self.to.as_ref()).shutdown(Shutdown::Write);
        }
    }

    fn read_failed(&self) -> Side {
        abort(self.to.as_ref(), self.sides().0)
    }

    fn write_failed(&self) -> Side {
        abort(self.from.as_ref(), self.sides().1)
    }

    /// The sides this direction reads from and writes to.
    fn sides(&self) -> (Side, Side) {
        match self.way {
            Way::Up => (Side::Client, Side::Backend),
            Way::Down => (Side::Backend, Side::Client),
        }
    }
}

/// Waits until `socket` may have bytes to read. `poll_read_ready` keeps the
/// waker in the socket's own registration (each direction is the only reader
/// of its socket), so an idle session's task holds no waiter of its own: a
/// `readable()` future would carry a 150-byte one per direction.
async fn read_ready(socket: &TcpStream) -> io::Result<()> {
    poll_fn(|cx| socket.poll_read_ready(cx)).await
}

/// Waits until `socket` can take bytes; as `read_ready` (each direction is
/// the only writer of its socket).
async fn write_ready(socket: &TcpStream) -> io::Result<()> {
    poll_fn(|cx| socket.poll_write_ready(cx)).await
}

/// One read into `buf` that never waits: `Pending` when the socket had nothing
/// after all (the runtime then knows it is drained, so the next wait goes to
/// epoll). Reading through `AsyncRead` lets a short read mark the socket
/// drained too, saving the read that would fail with EAGAIN.
fn read_now(from: &mut ReadHalf<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    poll_read_buf(Pin::new(from), &mut cx, buf)
}

/// After an error on `failed`'s socket, makes the peer of `other` (the session's
/// other socket) see a reset rather than a clean end of stream, so a broken
/// session is never mistaken for a complete one.
fn abort(other: &TcpStream, failed: Side) -> Side {
    let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;
    use tokio::net::TcpListener;

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    /// Every idle session holds one relay future. Taking the stop future or a
    /// direction's state by value, or waiting on `readable()`, grows it by
    /// hundreds of bytes (1,216 before they were removed; now 960 in a debug
    /// build and 904 in a release one), which this bound catches.
    #[tokio::test]
    async fn an_idle_sessions_relay_future_stays_small() {
        let (mut client, mut backend) = socket_pair().await;
        let totals = (AtomicU64::new(0), AtomicU64::new(0));
        let stop = pin!(pending::<SessionEnd>());
        let idle = Duration::from_secs(60);
        let relay = relay(
            &mut client,
            &mut backend,
            idle,
            stop,
            (&totals.0, &totals.1),
        );
        let size = std::mem::size_of_val(&relay);
        assert!(size <= 1152, "the relay future is {size} bytes");
    }
}
