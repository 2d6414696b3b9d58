//! Zero-copy relaying with `splice(2)`: socket → pipe → socket, the bytes never
//! entering user space.
//!
//! Worth it only for bulk transfers (a small message costs two system calls
//! instead of one read and one write), so the relay switches to it for a burst
//! only after a read has filled a whole buffer. Pipes are pooled per thread and
//! held only while a burst lasts, so an idle session holds none. The number of
//! pipes in existence is bounded process-wide (`MAX_PIPES`); when the bound is
//! reached, or a pipe cannot be created, the relay simply keeps copying.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most pipes in existence at once, process-wide (two descriptors each; the
/// descriptor budget keeps room for them).
pub const MAX_PIPES: usize = 64;

/// Most idle pipes kept per thread.
const SPARE_PER_THREAD: usize = 8;

/// Bytes moved per splice call at most: the size each pipe asks for (the
/// kernel may grant less: a default pipe holds 64 KiB, and fewer bytes per call
/// only means more calls).
pub const PIPE_BYTES: usize = 1024 * 1024;

static PIPES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SPARE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A non-blocking pipe, empty whenever it is in the pool.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// A pipe lent to one burst: `give_back` returns it to the pool; dropped
/// instead (an error, a cancelled burst), it is closed.
#[derive(Debug)]
pub struct PooledPipe {
    pipe: Pipe,
    /// Bytes in the pipe not yet passed on.
    pending: usize,
}

impl PooledPipe {
    /// A pipe from this thread's pool or a new one; `None` when `MAX_PIPES`
    /// exist already or the system refuses one.
    pub fn take() -> Option<PooledPipe> {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        let pipe = match spare {
            Some(pipe) => pipe,
            None => Pipe::create()?,
        };
        Some(PooledPipe { pipe, pending: 0 })
    }

    /// Bytes waiting in the pipe.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Moves what `socket` has to read (up to `PIPE_BYTES`) into the empty pipe;
    /// `Ok(0)` at end of stream, `WouldBlock` when nothing is waiting.
    pub fn fill_from(&mut self, socket: RawFd) -> io::Result<usize> {
        let moved = splice(socket, self.pipe.write.as_raw_fd(), PIPE_BYTES)?;
        self.pending += moved;
        Ok(moved)
    }

    /// Moves pending bytes from the pipe into `socket`; `WouldBlock` when the
    /// socket cannot take any now.
    pub fn drain_to(&mut self, socket: RawFd) -> io::Result<usize> {
        let moved = splice(self.pipe.read.as_raw_fd(), socket, self.pending)?;
        self.pending -= moved.min(self.pending);
        Ok(moved)
    }

    /// Back to this thread's pool, if empty (a pipe with bytes in it is closed:
    /// never lent out with stale bytes) and the pool has room.
    pub fn give_back(self) {
        if self.pending != 0 {
            return;
        }
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_PER_THREAD {
                spare.push(self.pipe);
            }
        });
    }
}

impl Pipe {
    fn create() -> Option<Pipe> {
        let counted = PIPES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_PIPES).then_some(n + 1)
        });
        counted.ok()?;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into a valid two-element array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int and touches no memory. Best effort:
        // refused beyond /proc/sys/fs/pipe-max-size or the user's pipe quota.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            )
        };
        Some(Pipe { read, write })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain system call on descriptors the caller keeps open; null
    // offsets mean "current position", as required for sockets and pipes.
    let moved = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    usize::try_from(moved).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    fn moves_bytes_from_one_socket_to_another_and_returns_empty_pipes() {
        let (mut source, source_peer) = socket_pair();
        let (sink_peer, mut sink) = socket_pair();
        source_peer.set_nonblocking(true).unwrap();
        source.write_all(b"zero copy").unwrap();
        let mut pipe = PooledPipe::take().unwrap();
        let mut filled = 0;
        while filled == 0 {
            match pipe.fill_from(source_peer.as_raw_fd()) {
                Ok(n) => filled = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((filled, pipe.pending()), (9, 9));
        assert_eq!(pipe.drain_to(sink_peer.as_raw_fd()).unwrap(), 9);
        assert_eq!(pipe.pending(), 0);
        let mut got = [0u8; 9];
        sink.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"zero copy");
        let nothing = pipe.fill_from(source_peer.as_raw_fd()).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        drop(source);
        // End of stream reads as 0.
        let mut end = None;
        for _ in 0..1000 {
            match pipe.fill_from(source_peer.as_raw_fd()) {
                Ok(n) => {
                    end = Some(n);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        assert_eq!(end, Some(0));
        pipe.give_back();
        let reused = SPARE.with(|spare| spare.borrow().len());
        assert_eq!(reused, 1, "an empty pipe goes back to the pool");
    }
}
