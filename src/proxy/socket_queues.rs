//! What the kernel knows of a TCP socket's bytes that the relay cannot see
//! from its own reads and writes.
//!
//! - How many are still queued: received but not yet read (`FIONREAD`), and
//!   sent but not yet acknowledged by the peer (`SIOCOUTQ`). The relay asks
//!   when it cuts a session, to tell a quiet session (closed with a FIN) from
//!   one with data still on its way (reset, so neither peer mistakes the cut
//!   for a complete stream).
//! - How many have moved at all (`TCP_INFO`'s bytes acknowledged by the peer
//!   plus bytes received from it): a peer that is still taking what the
//!   kernel buffered, or still sending into a full buffer, is not idle.
//!
//! System calls that neither socket2 nor tokio expose, behind a safe wrapper.

use std::os::fd::{AsRawFd, RawFd};

/// Bytes received on `socket` and not yet read; 0 when the kernel cannot tell.
pub fn unread_bytes(socket: &impl AsRawFd) -> usize {
    ioctl_count(socket, libc::FIONREAD)
}

/// Bytes written to `socket` that the peer has not acknowledged yet; 0 when
/// the kernel cannot tell.
pub fn unsent_bytes(socket: &impl AsRawFd) -> usize {
    ioctl_count(socket, libc::TIOCOUTQ)
}

/// Bytes the peer of `socket` has acknowledged plus bytes received from it,
/// since the connection opened; grows whenever bytes move either way. 0 when
/// the kernel cannot tell. Takes a raw descriptor so that it can be asked
/// while the socket is split between the relay's two directions; the caller
/// keeps the socket open.
pub fn bytes_moved(socket: RawFd) -> u64 {
    // SAFETY: tcp_info is plain integers, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a live local.
    let rc = unsafe {
        libc::getsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return 0;
    }
    info.tcpi_bytes_acked.wrapping_add(info.tcpi_bytes_received)
}

fn ioctl_count(socket: &impl AsRawFd, request: libc::Ioctl) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: both requests write one int through a pointer to a live int.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut count as *mut libc::c_int) };
    if rc == 0 {
        usize::try_from(count).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn counts_bytes_received_and_not_yet_read() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sender = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut receiver, _) = listener.accept().expect("accept");
        assert_eq!(unread_bytes(&receiver), 0);
        sender.write_all(b"twelve bytes").expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        while unread_bytes(&receiver) < 12 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(unread_bytes(&receiver), 12);
        let mut buf = [0u8; 12];
        receiver.read_exact(&mut buf).expect("read");
        assert_eq!(unread_bytes(&receiver), 0);
    }

    #[test]
    fn counts_bytes_sent_and_not_yet_taken_by_the_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sender = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_receiver, _) = listener.accept().expect("accept");
        sender.set_nonblocking(true).expect("nonblocking");
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        while let Ok(n) = sender.write(&chunk) {
            written += n;
        }
        // The receiver reads nothing: what its window cannot take stays queued.
        assert!(written > 0);
        assert!(unsent_bytes(&sender) > 0, "{written} bytes written");
    }

    #[test]
    fn bytes_moved_grows_with_bytes_either_way() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = listener.accept().expect("accept");
        let before = bytes_moved(a.as_raw_fd());
        a.write_all(b"ping").expect("send");
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).expect("read");
        b.write_all(b"pong").expect("answer");
        a.read_exact(&mut buf).expect("read answer");
        let deadline = Instant::now() + Duration::from_secs(5);
        while bytes_moved(a.as_raw_fd()) < before + 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(bytes_moved(a.as_raw_fd()), before + 8);
    }
}
