//! What a service counts about the clients it turns away and the datagrams it
//! drops, by reason. Shared (`Arc`) by every generation of a service, so a reload
//! never resets a counter.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client was turned away (the `reason` label of rejected-connection counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No backend could be chosen (none available, or all full).
    NoBackend,
    /// A process, service or per-source connection cap was reached.
    MaxConnections,
    /// Every connect attempt failed.
    BackendConnect,
    /// The client's address is not allowed (`allow` / `deny`).
    Acl,
    /// `accept_proxy_protocol`: the client's PROXY header was missing, malformed or late.
    ProxyProtocol,
    /// Routing by TLS server name: the ClientHello was malformed, SSLv2, too
    /// large or unfinished in time, or the client left before sending it.
    TlsPreread,
    /// `no_sni = "reject"`: the client sent no server name (or no TLS).
    NoSni,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::NoBackend,
        RejectReason::MaxConnections,
        RejectReason::BackendConnect,
        RejectReason::Acl,
        RejectReason::ProxyProtocol,
        RejectReason::TlsPreread,
        RejectReason::NoSni,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoBackend => "no_backend",
            RejectReason::MaxConnections => "max_connections",
            RejectReason::BackendConnect => "backend_connect",
            RejectReason::Acl => "acl",
            RejectReason::ProxyProtocol => "proxy_protocol",
            RejectReason::TlsPreread => "tls_preread",
            RejectReason::NoSni => "no_sni",
        }
    }
}

/// Why a UDP datagram was dropped (the `reason` label of dropped-datagram counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No backend could be chosen for a new flow.
    NoBackend,
    /// The flow table is full: a new flow was refused.
    MaxFlows,
    /// Sending failed (e.g. ICMP unreachable, or a full socket buffer).
    SendError,
    /// The client's address is not allowed (`allow` / `deny`).
    Acl,
    /// Too big to be sent on (EMSGSIZE): the sender's problem, not the backend's.
    TooBig,
    /// Its source is one of this process's own UDP listen addresses: answering
    /// it would make l4lb talk to itself in an endless loop.
    Loop,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::NoBackend,
        DropReason::MaxFlows,
        DropReason::SendError,
        DropReason::Acl,
        DropReason::TooBig,
        DropReason::Loop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoBackend => "no_backend",
            DropReason::MaxFlows => "max_flows",
            DropReason::SendError => "send_error",
            DropReason::Acl => "acl",
            DropReason::TooBig => "too_big",
            DropReason::Loop => "loop",
        }
    }
}

/// The service's own counters (backends keep theirs).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    rejected: [AtomicU64; RejectReason::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    accept_errors: AtomicU64,
}

impl ServiceCounters {
    pub fn count_rejection(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    pub fn count_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    pub fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }
}
