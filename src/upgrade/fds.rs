//! Descriptors over a unix stream socket (SCM_RIGHTS), through rustix.
//!
//! Each batch is one `sendmsg` of a single byte carrying at most
//! [`FDS_PER_MESSAGE`] descriptors (the kernel's limit is 253 per message); the
//! receiver reads one byte per `recvmsg`, so a batch is never split or merged
//! and no descriptor is lost to a plain read. Received descriptors are
//! close-on-exec.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::{IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// Descriptors per message at most.
pub const FDS_PER_MESSAGE: usize = 250;

/// The byte each batch rides on.
const BATCH_MARK: u8 = b'F';

/// Sends one batch (at most `FDS_PER_MESSAGE`): `Ok(false)` when the socket
/// would block (nothing was sent), `Ok(true)` once it went out.
pub fn send_batch(socket: impl AsFd, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    debug_assert!(fds.len() <= FDS_PER_MESSAGE);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("descriptor batch does not fit its buffer"));
    }
    let mark = [BATCH_MARK];
    match sendmsg(
        socket,
        &[IoSlice::new(&mark)],
        &mut control,
        SendFlags::NOSIGNAL,
    ) {
        Ok(1) => Ok(true),
        Ok(_) => Err(io::Error::other("descriptor batch not sent")),
        Err(rustix::io::Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends every descriptor of `fds`, in batches, on a blocking socket.
pub fn send_all(socket: impl AsFd, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    for batch in fds.chunks(FDS_PER_MESSAGE) {
        if !send_batch(socket.as_fd(), batch)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
    Ok(())
}

/// Receives exactly `count` descriptors, in as many batches as they were sent
/// in, on a blocking socket (its read timeout applies to each batch).
pub fn recv_all(socket: impl AsFd, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let batch = recv_batch(socket.as_fd())?;
        if batch.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a descriptor batch arrived without descriptors",
            ));
        }
        received.extend(batch);
    }
    if received.len() > count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {count} descriptors, got {}", received.len()),
        ));
    }
    Ok(received)
}

fn recv_batch(socket: BorrowedFd<'_>) -> io::Result<Vec<OwnedFd>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut mark = [0u8; 1];
    let message = recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut mark)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for part in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = part {
            fds.extend(rights);
        }
    }
    if message.bytes == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if message.flags.contains(ReturnFlags::CTRUNC) || mark[0] != BATCH_MARK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a descriptor batch was cut short or malformed",
        ));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn more_descriptors_than_one_message_holds_arrive_in_order() {
        let (a, b) = UnixStream::pair().expect("pair");
        let sockets: Vec<std::net::UdpSocket> = (0..300)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("socket"))
            .collect();
        let received = std::thread::scope(|scope| {
            let sender = scope.spawn(|| {
                let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
                send_all(&a, &fds).is_ok()
            });
            let received = recv_all(&b, 300).expect("received");
            assert!(sender.join().expect("sender"));
            received
        });
        for (socket, fd) in sockets.iter().zip(received) {
            let got = std::net::UdpSocket::from(fd).local_addr().expect("address");
            assert_eq!(got, socket.local_addr().expect("address"));
        }
    }
}
