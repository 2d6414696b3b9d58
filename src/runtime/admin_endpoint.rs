//! The admin endpoint's socket and task: bound with the services, started with
//! `serve`, moved by a reload that changes `[admin] listen` (bind the new address
//! first, then stop the old server), stopped last at shutdown. The admin address
//! is bound without SO_REUSEPORT: it belongs to one process.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::admin::{self, AdminState};
use std::os::fd::{AsFd, OwnedFd};

use crate::config::{AdminConfig, Protocol};
use crate::proxy::listener::bind_tcp_exclusive;

use super::StartError;
use super::inherited::InheritedSockets;

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What a reload will do to the admin endpoint.
#[derive(Debug)]
pub enum AdminChange {
    Keep,
    /// Serve on this new listener (or on none) from now on.
    Replace(Option<(SocketAddr, TcpListener)>),
}

#[derive(Debug, Default)]
pub struct AdminEndpoint {
    /// The configured address currently served (or about to be).
    configured: Option<SocketAddr>,
    local: Option<SocketAddr>,
    pending: Option<TcpListener>,
    running: Option<Running>,
    /// A descriptor of the listener being served, for a successor.
    handover: Option<OwnedFd>,
}

impl AdminEndpoint {
    /// Binds `config`'s address, or takes the socket `inherited` holds for it
    /// (a predecessor's admin socket).
    pub fn bind(
        config: Option<&AdminConfig>,
        inherited: &mut InheritedSockets,
    ) -> Result<AdminEndpoint, StartError> {
        let mut endpoint = AdminEndpoint::default();
        if let Some(admin) = config {
            let listener = match inherited.take(Protocol::Tcp, admin.listen).pop() {
                Some((fd, _)) => adopt_admin(admin.listen, fd)?,
                None => bind_admin(admin.listen, None)?,
            };
            endpoint.configured = Some(admin.listen);
            endpoint.local = listener.local_addr().ok();
            endpoint.pending = Some(listener);
        }
        Ok(endpoint)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// A descriptor of the admin listener, for a successor.
    pub fn export(&self) -> Option<(SocketAddr, OwnedFd)> {
        let local = self.local?;
        let fd = self.handover.as_ref()?.try_clone().ok()?;
        Some((local, fd))
    }

    /// Stops answering (a successor answers on the same socket now); `stop`
    /// still waits for the server task.
    pub fn stop_accepting(&mut self) {
        if let Some(running) = &self.running {
            running.stop.cancel();
        }
        self.handover = None;
    }

    /// Starts serving the bound listener, if any.
    pub fn start(&mut self, state: Arc<dyn AdminState>) {
        let Some(listener) = self.pending.take() else {
            return;
        };
        if let Some(address) = self.local {
            info!(%address, "admin endpoint listening");
        }
        self.handover = listener.as_fd().try_clone_to_owned().ok();
        let stop = CancellationToken::new();
        let task = tokio::spawn(admin::serve(listener, state, stop.clone()));
        self.running = Some(Running { stop, task });
    }

    /// Binds what `config` asks for if it differs from what is served.
    pub fn prepare(&self, config: Option<&AdminConfig>) -> Result<AdminChange, StartError> {
        let wanted = config.map(|a| a.listen);
        if wanted == self.configured {
            return Ok(AdminChange::Keep);
        }
        let replacement = match wanted {
            Some(address) => Some((address, bind_admin(address, self.local)?)),
            None => None,
        };
        Ok(AdminChange::Replace(replacement))
    }

    /// Applies a prepared change: the old server stops, the new one starts.
    pub fn commit(&mut self, change: AdminChange, state: Arc<dyn AdminState>) {
        let AdminChange::Replace(replacement) = change else {
            return;
        };
        if let Some(old) = self.running.take() {
            old.stop.cancel();
        }
        self.handover = None;
        self.configured = replacement.as_ref().map(|(address, _)| *address);
        self.local = replacement.as_ref().and_then(|(_, l)| l.local_addr().ok());
        self.pending = replacement.map(|(_, listener)| listener);
        self.start(state);
    }

    /// Stops the server and waits for it.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// Binds the admin address for this process alone (no SO_REUSEPORT): a second
/// l4lb on the same address fails to start instead of splitting `/status`, the
/// runtime API and scrapes with this one. `served` is the address this process
/// serves the admin endpoint on now, if any (a reload moving it).
fn bind_admin(address: SocketAddr, served: Option<SocketAddr>) -> Result<TcpListener, StartError> {
    bind_tcp_exclusive(address)
        .and_then(TcpListener::from_std)
        .map_err(|source| StartError::Admin {
            address,
            source: explain_address_in_use(source, address, served),
        })
}

/// A predecessor's admin listener, checked to be a listening TCP socket on `address`.
fn adopt_admin(address: SocketAddr, fd: OwnedFd) -> Result<TcpListener, StartError> {
    let failed = |source| StartError::Admin { address, source };
    let kind = rustix::net::sockopt::socket_type(&fd).map_err(|e| failed(e.into()))?;
    let listening = rustix::net::sockopt::socket_acceptconn(&fd).map_err(|e| failed(e.into()))?;
    if kind != rustix::net::SocketType::STREAM || !listening {
        let why = io::Error::new(
            io::ErrorKind::InvalidInput,
            "the inherited socket is not a listening tcp socket",
        );
        return Err(failed(why));
    }
    let listener = std::net::TcpListener::from(fd);
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(failed)
}

/// `error`, with what an address in use means for the admin endpoint.
fn explain_address_in_use(
    error: io::Error,
    wanted: SocketAddr,
    served: Option<SocketAddr>,
) -> io::Error {
    if error.kind() != io::ErrorKind::AddrInUse {
        return error;
    }
    let why = match served {
        Some(served) if served.port() == wanted.port() => format!(
            "it overlaps {served}, where this process serves the admin endpoint now, \
             and the admin address is never shared: moving it to another address on \
             the same port needs a restart"
        ),
        _ => "another process (another l4lb?) already listens there, \
              and the admin address is never shared"
            .to_string(),
    };
    io::Error::new(io::ErrorKind::AddrInUse, format!("{error}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_use() -> io::Error {
        io::Error::from(io::ErrorKind::AddrInUse)
    }

    #[test]
    fn an_address_in_use_is_blamed_on_another_process_or_on_an_overlap() {
        let wanted: SocketAddr = "0.0.0.0:9100".parse().expect("address");
        let other = explain_address_in_use(in_use(), wanted, None).to_string();
        assert!(other.contains("another process (another l4lb?)"), "{other}");
        let elsewhere = "127.0.0.1:9200".parse().ok();
        let moved = explain_address_in_use(in_use(), wanted, elsewhere).to_string();
        assert!(moved.contains("another process"), "{moved}");
        let same_port = "127.0.0.1:9100".parse().ok();
        let overlap = explain_address_in_use(in_use(), wanted, same_port).to_string();
        assert!(overlap.contains("overlaps 127.0.0.1:9100"), "{overlap}");
        assert!(overlap.contains("needs a restart"), "{overlap}");
        let refused = io::Error::from(io::ErrorKind::PermissionDenied);
        let kept = explain_address_in_use(refused, wanted, None);
        assert_eq!(kept.kind(), io::ErrorKind::PermissionDenied);
    }
}
