//! The running server's control socket (binary upgrades) and what it does
//! for an upgrade session: hands out its sockets and UDP pause handles, and on
//! commit stops answering the admin endpoint and stops accepting.
//!
//! The socket is opened on request (`Server::open_control_socket`, which `l4lb
//! run` calls once it serves) so that in-process servers (tests) have none.
//! At a plain shutdown the socket file is removed when it is still this
//! process's own; after a handoff it is left alone (the successor's now).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::status::HandoverReport;
use crate::upgrade::control_path;
use crate::upgrade::protocol::{SocketRecord, SocketRole};

use super::Server;
use super::handoff::{self, HandoffCommand};

/// The open control socket.
#[derive(Debug)]
pub(super) struct ControlSocket {
    path: PathBuf,
    /// The socket file's inode, to tell it from a successor's.
    inode: Option<u64>,
    stop: CancellationToken,
}

impl ControlSocket {
    /// Stops accepting; removes the file unless the process handed over.
    pub(super) fn close(self, handed_over: bool) {
        self.stop.cancel();
        if handed_over {
            return;
        }
        let still_ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| Some(m.ino()) == self.inode);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Server {
    /// Opens `[global] control_socket` for successors (mode 0600, a stale file
    /// replaced). Must run inside the control plane's runtime.
    pub fn open_control_socket(&mut self) -> io::Result<PathBuf> {
        let path = self.config.global.control_socket.clone();
        let listener = control_path::listen(&path)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let inode = std::fs::symlink_metadata(&path).ok().map(|m| m.ino());
        let stop = self.ctx.lifecycle.stop_accepting.child_token();
        tokio::spawn(handoff::serve_control(
            listener,
            path.clone(),
            self.config.source.clone(),
            self.handoff_requests.clone(),
            Arc::clone(&self.live),
            stop.clone(),
        ));
        self.live
            .update_upgrade(|u| u.control_socket = Some(path.display().to_string()));
        self.control = Some(ControlSocket {
            path: path.clone(),
            inode,
            stop,
        });
        Ok(path)
    }

    /// What the predecessor handed over to this process (for `/status` and metrics).
    pub fn record_predecessor(&self, report: HandoverReport) {
        self.live.update_upgrade(|u| u.predecessor = Some(report));
    }

    /// Answers an upgrade session.
    pub(super) fn on_handoff(&mut self, command: HandoffCommand) {
        match command {
            HandoffCommand::Sockets(reply) => {
                let _ = reply.send(self.sockets_for_successor());
            }
            HandoffCommand::UdpPauses(reply) => {
                let _ = reply.send(self.listeners.udp_pauses());
            }
            HandoffCommand::Commit(report) => {
                info!(
                    successor = report.pid,
                    "the new process serves: this one stops accepting"
                );
                self.live.update_upgrade(|u| {
                    u.successor = Some(report);
                    u.control_socket = None;
                });
                self.admin.stop_accepting();
                self.handle.shutdown();
            }
        }
    }

    fn sockets_for_successor(&self) -> Vec<(SocketRecord, std::os::fd::OwnedFd)> {
        let mut sockets: Vec<_> = self
            .listeners
            .export()
            .into_iter()
            .map(|s| {
                let record = SocketRecord {
                    protocol: s.protocol,
                    role: SocketRole::Service,
                    local: s.local,
                    id: s.id,
                };
                (record, s.fd)
            })
            .collect();
        if let Some((local, fd)) = self.admin.export() {
            let id = super::socket_group::socket_id(&fd).unwrap_or(0);
            let record = SocketRecord {
                protocol: crate::config::Protocol::Tcp,
                role: SocketRole::Admin,
                local,
                id,
            };
            sockets.push((record, fd));
        }
        sockets
    }
}

/// Logs why the control socket could not be opened (the process serves on,
/// but cannot be upgraded seamlessly).
pub fn warn_unavailable(path: &Path, error: &io::Error) {
    warn!(path = %path.display(), error = %error,
        "cannot open the control socket: this process serves, but a binary upgrade \
         cannot take its sockets over (set [global] control_socket to a path of its own)");
}
