//! Receiving many datagrams with one system call: a safe wrapper around Linux's
//! `recvmmsg(2)`.
//!
//! `RecvBatch` owns the payload buffers and the address storage for a fixed
//! number of datagrams and reuses them for every call (only the small per-call
//! headers pointing into them are built anew, on the stack). It only reads a
//! socket that is already non-blocking and never waits (`MSG_DONTWAIT`): the
//! caller waits for readiness. All `unsafe` code of
//! the UDP path is in this file, each block with its reasoning.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Room for the largest UDP payload (65507 bytes over IPv4) and then some.
pub const SLOT_BYTES: usize = 65_536;

/// Most datagrams one call receives.
pub const MAX_SLOTS: usize = 32;

/// Buffers for up to `slots` datagrams per call.
pub struct RecvBatch {
    storage: Vec<u8>,
    addresses: Vec<libc::sockaddr_storage>,
    lengths: Vec<usize>,
    received: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecvBatch({} slots, {} received)",
            self.lengths.len(),
            self.received
        )
    }
}

impl RecvBatch {
    /// Buffers for `slots` datagrams per call (1 to `MAX_SLOTS`).
    pub fn new(slots: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_SLOTS);
        RecvBatch {
            storage: vec![0; slots * SLOT_BYTES],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addresses: vec![unsafe { mem::zeroed() }; slots],
            lengths: vec![0; slots],
            received: 0,
        }
    }

    /// Receives as many waiting datagrams as fit, without blocking: the number
    /// received, or `WouldBlock` when none is waiting. The per-call headers
    /// live on the stack: a call allocates nothing.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let slots = self.lengths.len();
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is a valid value.
        let mut iovecs: [libc::iovec; MAX_SLOTS] = unsafe { mem::zeroed() };
        let mut headers: [libc::mmsghdr; MAX_SLOTS] = unsafe { mem::zeroed() };
        let buffers = self.storage.chunks_exact_mut(SLOT_BYTES);
        let parts = iovecs.iter_mut().zip(headers.iter_mut());
        for ((slot, address), (iov, header)) in buffers.zip(self.addresses.iter_mut()).zip(parts) {
            *iov = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            header.msg_hdr.msg_name = (address as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as u32;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `slots` headers point at an iovec of `iovecs` and an
        // address slot of `self`, all of which outlive the call; each iovec
        // covers exactly one SLOT_BYTES slot of `self.storage`; `slots` is at
        // most MAX_SLOTS.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = count as usize;
        for (length, header) in self.lengths.iter_mut().zip(&headers).take(self.received) {
            *length = (header.msg_len as usize).min(SLOT_BYTES);
        }
        Ok(self.received)
    }

    /// `recv` on a socket of the runtime, inside its readiness check. A call
    /// that returns fewer datagrams than the batch holds has drained the socket,
    /// and the runtime is told so (as it does itself for a short stream read):
    /// the next wait goes to epoll instead of to a call that fails with EAGAIN.
    pub fn recv_ready(&mut self, socket: &tokio::net::UdpSocket) -> io::Result<usize> {
        let slots = self.lengths.len();
        let mut received = 0;
        let outcome = socket.try_io(tokio::io::Interest::READABLE, || {
            received = self.recv(socket)?;
            if received < slots {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match outcome {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && received > 0 => Ok(received),
            Err(e) => Err(e),
            Ok(()) => Ok(received),
        }
    }

    /// The `i`th datagram of the last call and its sender; `None` past the end or
    /// for a sender of an unexpected address family.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let start = i * SLOT_BYTES;
        let payload = &self.storage[start..start + self.lengths[i]];
        Some((payload, socket_addr(&self.addresses[i])?))
    }
}

/// Reads an IPv4 or IPv6 address out of kernel-filled storage.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let pointer: *const libc::sockaddr_storage = storage;
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET), which is
            // smaller than and compatibly aligned with sockaddr_storage.
            let v4 = unsafe { &*pointer.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(v4.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
            let v6 = unsafe { &*pointer.cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn receives_several_datagrams_with_their_senders_in_one_call() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_nonblocking(true).expect("nonblocking");
        let to = receiver.local_addr().expect("address");
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.send_to(b"one", to).expect("send");
        b.send_to(b"", to).expect("send");
        a.send_to(&vec![7u8; 65_507], to).expect("send");

        let mut batch = RecvBatch::new(8);
        assert_eq!(batch.recv(&receiver).expect("recv"), 3);
        let sender = |s: &UdpSocket| s.local_addr().expect("address");
        assert_eq!(batch.get(0), Some((&b"one"[..], sender(&a))));
        assert_eq!(batch.get(1), Some((&b""[..], sender(&b))));
        let (big, from) = batch.get(2).expect("third");
        assert_eq!((big.len(), from), (65_507, sender(&a)));
        assert!(big.iter().all(|&x| x == 7));
        assert!(batch.get(3).is_none());
    }

    #[test]
    fn an_empty_socket_would_block_and_more_than_the_batch_waits_for_the_next_call() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_nonblocking(true).expect("nonblocking");
        let mut batch = RecvBatch::new(2);
        let empty = batch.recv(&receiver).expect_err("nothing waiting");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..3u8 {
            sender
                .send_to(&[i], receiver.local_addr().expect("address"))
                .expect("send");
        }
        assert_eq!(batch.recv(&receiver).expect("first two"), 2);
        assert_eq!(batch.get(1).map(|(p, _)| p.to_vec()), Some(vec![1]));
        assert_eq!(batch.recv(&receiver).expect("the third"), 1);
        assert_eq!(batch.get(0).map(|(p, _)| p.to_vec()), Some(vec![2]));
    }

    #[test]
    fn ipv6_senders_are_read_back() {
        let Ok(receiver) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback; skipping");
            return;
        };
        receiver.set_nonblocking(true).expect("nonblocking");
        let sender = UdpSocket::bind("[::1]:0").expect("bind");
        sender
            .send_to(b"six", receiver.local_addr().expect("address"))
            .expect("send");
        let mut batch = RecvBatch::new(4);
        assert_eq!(batch.recv(&receiver).expect("recv"), 1);
        let expected = sender.local_addr().expect("address");
        assert_eq!(batch.get(0), Some((&b"six"[..], expected)));
    }
}
