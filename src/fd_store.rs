//! systemd's file-descriptor store (`FDSTORE=1`, see `sd_notify(3)`): every
//! listening socket is also given to systemd, which keeps a duplicate while the
//! unit runs or has a job queued. On `systemctl restart` the new process gets
//! them back as `LISTEN_FDS` (see `socket_activation`), and in between the
//! kernel keeps queuing clients on them instead of refusing them.
//!
//! A listener that a reload removes is taken back out (`FDSTOREREMOVE=1`):
//! systemd's duplicate would otherwise keep the socket open, and the kernel
//! would queue clients that nobody will ever accept.
//!
//! Used only when asked for (`l4lb run --fd-store`, or when systemd ≥ 254 tells
//! the process its store size in `$FDSTORE`): systemd logs a warning for every
//! descriptor sent to a unit without `FileDescriptorStoreMax=`.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use tracing::{debug, warn};

use crate::config::Protocol;
use crate::notify::Notifier;

/// Hands listening sockets to systemd's store, or does nothing when disabled
/// (the default).
#[derive(Debug, Clone, Default)]
pub struct FdStore {
    notifier: Option<Arc<Notifier>>,
}

impl FdStore {
    /// A store that sends through `notifier` when `wanted`, or when the
    /// environment's `FDSTORE` (set by systemd ≥ 254) is a positive number.
    pub fn new(notifier: Arc<Notifier>, wanted: bool) -> FdStore {
        let offered = std::env::var("FDSTORE")
            .ok()
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n > 0);
        let enabled = (wanted || offered) && notifier.is_enabled();
        FdStore {
            notifier: enabled.then_some(notifier),
        }
    }

    /// Gives systemd a duplicate of every socket of one listen address.
    pub fn store(&self, protocol: Protocol, local: SocketAddr, fds: &[BorrowedFd<'_>]) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let name = fd_name(protocol, local);
        let message = format!("FDSTORE=1\nFDNAME={name}");
        match notifier.send_with_fds(&message, fds) {
            Ok(_) => debug!(
                name,
                sockets = fds.len(),
                "listener kept in systemd's fd store"
            ),
            Err(error) => warn!(%error, name,
                "cannot keep the listener in systemd's fd store; a restart will rebind it"),
        }
    }

    /// Takes every stored socket of one listen address back out of the store.
    pub fn remove(&self, protocol: Protocol, local: SocketAddr) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let name = fd_name(protocol, local);
        let message = format!("FDSTOREREMOVE=1\nFDNAME={name}");
        if let Err(error) = notifier.send_with_fds(&message, &[]) {
            warn!(%error, name, "cannot remove the listener from systemd's fd store");
        }
    }
}

/// The store's name for one listen address: printable ASCII without ':' (the
/// separator of `LISTEN_FDNAMES`), e.g. `tcp-127.0.0.1_5432` or `udp-[__1]_53`.
pub fn fd_name(protocol: Protocol, local: SocketAddr) -> String {
    let address = local.to_string().replace(':', "_");
    format!("{}-{address}", protocol.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSliceMut;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    #[test]
    fn names_carry_no_colon_and_tell_addresses_apart() {
        let v4: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let v6: SocketAddr = "[::1]:53".parse().unwrap();
        assert_eq!(fd_name(Protocol::Tcp, v4), "tcp-127.0.0.1_5432");
        assert_eq!(fd_name(Protocol::Udp, v6), "udp-[__1]_53");
        assert_ne!(fd_name(Protocol::Tcp, v4), fd_name(Protocol::Udp, v4));
    }

    /// A socket standing in for systemd's notify socket, in a fresh directory
    /// named after `tag`: the directory, the socket's path, and the socket.
    fn fake_systemd(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, UnixDatagram) {
        let dir = std::env::temp_dir().join(format!("l4lb-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        (dir, path, systemd)
    }

    /// What systemd would receive: the message and the descriptors attached.
    fn receive(socket: &UnixDatagram) -> (String, Vec<OwnedFd>) {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let mut buf = [0u8; 512];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg(socket, &mut iov, &mut control, RecvFlags::empty()).unwrap();
        let len = msg.bytes;
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        (String::from_utf8(buf[..len].to_vec()).unwrap(), fds)
    }

    #[test]
    fn a_stored_listener_outlives_the_process_copy_and_can_be_removed() {
        let (dir, path, systemd) = fake_systemd("fdstore");
        systemd
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let store = FdStore {
            notifier: Some(Arc::new(Notifier::to_path(&path))),
        };

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        store.store(Protocol::Tcp, local, &[listener.as_fd()]);
        let (message, fds) = receive(&systemd);
        assert_eq!(
            message,
            format!("FDSTORE=1\nFDNAME={}", fd_name(Protocol::Tcp, local))
        );
        assert_eq!(fds.len(), 1);

        // The process's own copy closes; the stored one still queues clients.
        drop(listener);
        let client = TcpStream::connect_timeout(&local, Duration::from_secs(5));
        assert!(
            client.is_ok(),
            "the stored duplicate must keep the socket listening"
        );

        store.remove(Protocol::Tcp, local);
        let (message, fds) = receive(&systemd);
        assert_eq!(
            message,
            format!("FDSTOREREMOVE=1\nFDNAME={}", fd_name(Protocol::Tcp, local))
        );
        assert!(fds.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_not_asked_for_sends_nothing() {
        let (dir, path, systemd) = fake_systemd("fdstore-off");
        systemd.set_nonblocking(true).unwrap();
        // Not wanted, and no `$FDSTORE` offer in this process's environment.
        let store = FdStore::new(Arc::new(Notifier::to_path(&path)), false);
        assert!(store.notifier.is_none());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        store.store(Protocol::Tcp, local, &[listener.as_fd()]);
        store.remove(Protocol::Tcp, local);
        let mut buf = [0u8; 64];
        assert!(systemd.recv(&mut buf).is_err(), "nothing reached systemd");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
