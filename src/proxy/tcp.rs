//! TCP proxying: the accept loop of one listen address and the session of one client.
//!
//! accept → ACL → process cap → PROXY header (if expected; the ACL then judges
//! its address) → service and per-source caps → choose and connect a backend
//! (timeout, retries on other backends) → relay → one access-log line.
//! The ACL on the TCP peer and the process cap are judged in the accept loop
//! itself, so a client turned away is closed before the next one is accepted.
//! Every count taken on the way is an RAII permit or guard held by the session
//! task, so it is given back however the session ends.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backend::{Backend, ConnectionGuard};
use crate::balancer::sni_hash;
use crate::config::{AccessLog, NoSni, ServiceConfig};
use crate::health::ejection;
use crate::lifecycle::Lifecycle;
use crate::limit::{ConnectionLimit, LimitPermit};
use crate::log_throttle::LogThrottle;
use crate::proxy::backend_socket::connect_tcp;
use crate::proxy::client_hello::ClientHello;
use crate::proxy::dispatch::{WorkerDispatch, WorkerSeat};
use crate::proxy::preamble::{ClientOrigin, backend_preamble, header_version, read_header};
use crate::proxy::relay::{RelayOutcome, relay};
use crate::proxy::session_stop::SessionStop;
use crate::proxy::tls_preread::{PrereadOutcome, preread};
use crate::service::{ConnectAttempts, RejectReason, Service, ServiceSlot};

/// First pause after an accept error such as EMFILE; doubles up to `ACCEPT_BACKOFF_MAX`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One listen address of a service: what its accept loop needs.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// The service's current configuration; swapped by a reload.
    pub slot: Arc<ServiceSlot>,
    /// The process-wide `[global] max_connections` cap.
    pub process_limit: Arc<ConnectionLimit>,
    pub lifecycle: Lifecycle,
    /// Stops this listener alone (a reload that removes the address).
    pub stop: CancellationToken,
    pub warnings: Arc<LogThrottle>,
    /// Which worker serves each accepted client.
    pub dispatch: Arc<WorkerDispatch>,
    /// The worker this listener's accept loop runs on.
    pub worker: usize,
}

impl TcpProxy {
    /// Accepts clients on `listener` until `stop` (or `stop_accepting`) is cancelled.
    pub async fn accept_loop(self, listener: TcpListener) {
        // Shared by every session of this listener: one reference count per client.
        let shared = Arc::new(self);
        let this = &*shared;
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                () = this.stop.cancelled() => return,
                () = this.lifecycle.stop_accepting.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((client, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    let session = Session {
                        service: this.slot.current(),
                        listener: Arc::clone(&shared),
                        seat: None,
                    };
                    // Judged here, not in the session's task: a client turned
                    // away is closed before the next accept, so a burst of them
                    // never holds more descriptors than the cap allows.
                    if let Some(process_slot) = session.admit_to_process(peer) {
                        this.dispatch_client(session, client, peer, process_slot);
                    }
                }
                Err(e) if is_aborted_handshake(&e) => debug!(error = %e, "accept: client gone"),
                Err(e) => {
                    let service = this.slot.current();
                    service.count_accept_error();
                    if let Some(held_back) = this.warnings.permit() {
                        warn!(service = service.name(), error = %e, held_back,
                            pause_ms = backoff.as_millis() as u64, "accept failed; pausing");
                    }
                    tokio::select! {
                        () = this.stop.cancelled() => return,
                        () = this.lifecycle.stop_accepting.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }

    /// Runs an admitted client's session on the worker `dispatch` chooses: this
    /// one, or another with fewer sessions, where the socket is registered
    /// afresh (before anything is read from it). The session's future is
    /// spawned as it is, never wrapped in another async block that holds it:
    /// that would store it twice and double every idle session's memory.
    fn dispatch_client(
        &self,
        mut session: Session,
        client: TcpStream,
        peer: SocketAddr,
        process_slot: LimitPermit,
    ) {
        let target = self.dispatch.choose(self.worker);
        let elsewhere = match self.dispatch.handle(target) {
            Some(handle) if target != self.worker => handle,
            _ => {
                session.seat = Some(self.dispatch.seat(self.worker, false));
                let task = session.serve_client(client, peer, process_slot);
                self.lifecycle.sessions.spawn(task);
                return;
            }
        };
        let client = match client.into_std() {
            Ok(client) => client,
            Err(e) => return warn!(error = %e, %peer, "cannot hand a client to another worker"),
        };
        session.seat = Some(self.dispatch.seat(target, true));
        let task = async move {
            match TcpStream::from_std(client) {
                Ok(client) => session.serve_client(client, peer, process_slot).await,
                Err(e) => warn!(error = %e, %peer, "cannot register a handed-over client"),
            }
        };
        self.lifecycle.sessions.spawn_on(task, elsewhere);
    }
}

/// One client's session: until it has a backend, the service generation current
/// when it was accepted (for the PROXY header, the ACL and the limits); then the
/// one it connected with.
#[derive(Debug)]
struct Session {
    service: Arc<Service>,
    listener: Arc<TcpProxy>,
    /// Counts the session on the worker that serves it, for as long as the
    /// session that was accepted lives (`None` on the copy made at connect).
    seat: Option<WorkerSeat>,
}

impl Session {
    /// The first checks, as the client is accepted: the ACL on the TCP peer
    /// (unless a PROXY header will name the real client) and the process-wide
    /// cap, taken before any PROXY header is read (a client that never finishes
    /// one holds a descriptor as surely as a relayed one). `None`: rejected.
    fn admit_to_process(&self, tcp_peer: SocketAddr) -> Option<LimitPermit> {
        let expects_header = self.service.config().accept_proxy_protocol;
        if !expects_header && !self.service.permits(tcp_peer) {
            self.reject(tcp_peer, RejectReason::Acl, "source address not allowed");
            return None;
        }
        let slot = self.listener.process_limit.try_acquire();
        if slot.is_none() {
            self.reject(
                tcp_peer,
                RejectReason::MaxConnections,
                "process connection limit",
            );
        }
        slot
    }

    /// The whole life of one admitted client's session. Not an `async fn`: that
    /// would store each argument twice for the session's whole life
    /// (rust-lang/rust#62958); the block below holds them once.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would store its arguments twice"
    )]
    fn serve_client(
        self,
        mut client: TcpStream,
        tcp_peer: SocketAddr,
        process_slot: LimitPermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // Named here so the block owns the slot: it is freed when the session ends.
            let _process_slot = &process_slot;
            let started = Instant::now();
            let expects_header = self.service.config().accept_proxy_protocol;
            let mut origin = match self.client_origin(&mut client, tcp_peer).await {
                Ok(origin) => origin,
                Err(e) => {
                    let why = format!("bad or missing PROXY header: {e}");
                    return self.reject(tcp_peer, RejectReason::ProxyProtocol, &why);
                }
            };
            let peer = origin.source;
            if expects_header && !self.service.permits(peer) {
                return self.reject(peer, RejectReason::Acl, "source address not allowed");
            }
            // Per source only now: behind a PROXY header the real client is known
            // only once the header is read.
            let Some(_admission) = self.service.admit(peer) else {
                return self.reject(
                    peer,
                    RejectReason::MaxConnections,
                    "service or per-source limit",
                );
            };
            let routing = if self.service.prereads_tls() {
                match self.route_client(&client, peer).await {
                    Ok(routing) => routing,
                    Err((reason, why)) => return self.reject(peer, reason, &why),
                }
            } else {
                Routing::default()
            };
            let mut connected = match self.connect_backend(peer, &routing).await {
                Ok(connected) => connected,
                Err(reason) => return self.reject(peer, reason, "no backend could be reached"),
            };
            // From here on the session belongs to the generation it connected with.
            let session = Session {
                service: Arc::clone(&connected.service),
                listener: Arc::clone(&self.listener),
                seat: None,
            };
            session
                .relay(&mut client, &mut connected, &mut origin, &routing, started)
                .await;
        }
    }

    /// Reads the client's ClientHello ahead (peeking, never consuming) and
    /// admits it to the route it asks for: `Err` with the reason and why when
    /// it is turned away.
    async fn route_client(
        &self,
        client: &TcpStream,
        peer: SocketAddr,
    ) -> Result<Routing, (RejectReason, String)> {
        let config = self.service.config();
        let hello = match preread(client, config.preread_timeout).await {
            PrereadOutcome::Hello(hello) => Some(hello),
            PrereadOutcome::NotTls => None,
            PrereadOutcome::Refused(why) => {
                return Err((RejectReason::TlsPreread, format!("TLS preread: {why}")));
            }
        };
        let name = hello.as_ref().and_then(|h| h.server_name.as_deref());
        if name.is_none() && config.no_sni == NoSni::Reject {
            let why = "no TLS server name, and no_sni = \"reject\"".to_string();
            return Err((RejectReason::NoSni, why));
        }
        let alpn = hello.as_ref().map_or(&[][..], |h| h.alpn.as_slice());
        let pool = self.service.pool(self.service.route_for(name, alpn));
        let permit = pool.admit(peer.ip()).map_err(|reason| {
            let why = format!("route \"{}\": not allowed or full", pool.name());
            (reason, why)
        })?;
        Ok(Routing {
            server_hash: name.map(sni_hash),
            hello,
            _route_permit: Some(permit),
        })
    }

    /// Relays between the client and the backend it connected to, then logs.
    async fn relay(
        &self,
        client: &mut TcpStream,
        connected: &mut Connected,
        origin: &mut ClientOrigin,
        routing: &Routing,
        started: Instant,
    ) {
        let Connected {
            guard,
            stream: upstream,
            route,
            ..
        } = connected;
        let route = *route;
        let peer = origin.source;
        // The client's socket inherited TCP_NODELAY from the listener.
        let _ = upstream.set_nodelay(true);
        let early_bytes = origin.early_data.len() as u64;
        if let Err(e) = self.send_preamble(client, upstream, origin).await {
            debug!(client = %peer, error = %e, "backend closed before the session started");
            return;
        }
        let idle = self.service.config().idle_timeout;
        let stop = pin!(self.session_stop(guard.backend()));
        let totals = guard.backend().byte_counters();
        totals
            .0
            .fetch_add(early_bytes, std::sync::atomic::Ordering::Relaxed);
        let mut outcome = relay(client, upstream, idle, stop, totals).await;
        outcome.bytes_up += early_bytes;
        let duration = started.elapsed();
        self.service.record_session(duration);
        let route = routing
            .hello
            .as_ref()
            .map(|h| (self.service.pool(route).name(), h));
        self.log_session(peer, guard.backend(), route, &outcome, duration);
    }

    /// Who the client is: the TCP peer, or what its PROXY header says when the
    /// service expects one.
    async fn client_origin(
        &self,
        client: &mut TcpStream,
        peer: SocketAddr,
    ) -> io::Result<ClientOrigin> {
        if self.service.config().accept_proxy_protocol {
            read_header(client, peer).await
        } else {
            Ok(ClientOrigin::direct(peer))
        }
    }

    /// Writes our PROXY header (if configured) and any early client bytes to the backend.
    async fn send_preamble(
        &self,
        client: &TcpStream,
        upstream: &mut TcpStream,
        origin: &mut ClientOrigin,
    ) -> io::Result<()> {
        let header = match header_version(self.service.config().proxy_protocol) {
            Some(version) => {
                let destination = match origin.destination {
                    Some(destination) => destination,
                    None => client.local_addr()?,
                };
                Some((version, origin.source, destination))
            }
            None => None,
        };
        let preamble = backend_preamble(header, std::mem::take(&mut origin.early_data));
        if !preamble.is_empty() {
            upstream.write_all(&preamble).await?;
        }
        Ok(())
    }

    /// Completes when the session must be closed from outside: at the end of a
    /// drain, or when its backend's sessions are closed (marked down with
    /// `close_on_down`, or put in maintenance).
    fn session_stop(&self, backend: &Backend) -> SessionStop {
        let shutdown = Arc::clone(&self.listener.lifecycle.close_sessions);
        SessionStop::new(shutdown, backend.session_closer())
    }

    fn reject(&self, peer: SocketAddr, reason: RejectReason, why: &str) {
        self.service.count_rejection(reason);
        if let Some(held_back) = self.listener.warnings.permit() {
            warn!(service = self.service.name(), client = %peer, reason = reason.as_str(),
                held_back, "client rejected: {why}");
        }
    }

    /// Connects to a backend the strategy offers, moving on to the next one after a
    /// refused or timed-out connect, up to `connect_attempts` failures. Each choice
    /// is made from the service's live generation (a reload meanwhile is followed,
    /// and the backends already tried stay skipped).
    async fn connect_backend(
        &self,
        peer: SocketAddr,
        routing: &Routing,
    ) -> Result<Connected, RejectReason> {
        // The generation read at accept; `follow_reload` moves to the live one
        // if a reload came since.
        let mut service = Arc::clone(&self.service);
        let mut attempts = ConnectAttempts::default();
        loop {
            service = follow_reload(&self.listener.slot, service, attempts.tried_mut());
            let config = service.config();
            if !attempts.next_round(config.connect_attempts, service.backends().len()) {
                break;
            }
            // Per generation: a reload may have moved the client's name to another route.
            let route = routing.route_in(&service);
            let Some(index) =
                service.choose_backend_in(route, peer, routing.server_hash, attempts.tried())
            else {
                if Arc::ptr_eq(&service, &self.listener.slot.current()) {
                    break;
                }
                // A reload replaced the generation just read (and may have retired
                // its backends): choose again from the live one.
                continue;
            };
            attempts.offered(index);
            let backend = &service.backends()[index];
            let Some(guard) = backend.try_acquire() else {
                continue;
            };
            match connect_once(backend, config, peer).await {
                Ok(stream) => {
                    return Ok(Connected {
                        guard,
                        stream,
                        service,
                        route,
                    });
                }
                Err(e) if is_local_shortage(&e) => {
                    // Our own descriptors or ports ran out: no backend is to blame,
                    // and trying another one would fail the same way.
                    self.log_connect_failure(peer, backend, &e);
                    return Err(RejectReason::BackendConnect);
                }
                Err(e) => {
                    attempts.failed();
                    self.log_connect_failure(peer, backend, &e);
                    if backend.record_connect_failure(Instant::now().into_std()) {
                        let stop = self.listener.lifecycle.stop_accepting.clone();
                        ejection::announce(service.name(), backend, &e, stop);
                    }
                }
            }
        }
        Err(attempts.give_up_reason())
    }

    fn log_connect_failure(&self, peer: SocketAddr, backend: &Backend, error: &io::Error) {
        if let Some(held_back) = self.listener.warnings.permit() {
            warn!(service = self.service.name(), client = %peer, backend = backend.address(),
                error = %error, held_back, "backend connect failed");
        }
    }

    fn log_session(
        &self,
        peer: SocketAddr,
        backend: &Backend,
        route: Option<(&str, &ClientHello)>,
        outcome: &RelayOutcome,
        duration: Duration,
    ) {
        let wanted = match self.service.config().access_log {
            AccessLog::All => true,
            AccessLog::Errors => outcome.end.is_error(),
            AccessLog::Off => false,
        };
        if !wanted {
            return;
        }
        if let Some((route, hello)) = route {
            let sni = hello.server_name.as_deref().unwrap_or("");
            return info!(
                target: "l4lb::access",
                service = self.service.name(),
                client = %peer,
                backend = backend.address(),
                route,
                sni,
                bytes_up = outcome.bytes_up,
                bytes_down = outcome.bytes_down,
                duration_ms = duration.as_micros() as f64 / 1000.0,
                end = outcome.end.as_str(),
                "session closed"
            );
        }
        info!(
            target: "l4lb::access",
            service = self.service.name(),
            client = %peer,
            backend = backend.address(),
            bytes_up = outcome.bytes_up,
            bytes_down = outcome.bytes_down,
            duration_ms = duration.as_micros() as f64 / 1000.0,
            end = outcome.end.as_str(),
            "session closed"
        );
    }
}

/// A backend connection and the service generation (and route) it was chosen from.
#[derive(Debug)]
struct Connected {
    guard: ConnectionGuard,
    stream: TcpStream,
    service: Arc<Service>,
    route: usize,
}

/// What a client's ClientHello said, for a service that reads it; empty otherwise.
#[derive(Debug, Default)]
struct Routing {
    /// `None`: not read, or the client does not speak TLS.
    hello: Option<ClientHello>,
    /// `sni_hash` of the server name, for `hash_key = "sni"`.
    server_hash: Option<u64>,
    /// The route's cap, held for the session.
    _route_permit: Option<LimitPermit>,
}

impl Routing {
    /// The client's route in `service` (0, the default, without a hello).
    fn route_in(&self, service: &Service) -> usize {
        match &self.hello {
            Some(hello) => service.route_for(hello.server_name.as_deref(), &hello.alpn),
            None => 0,
        }
    }
}

/// The live generation of `slot`; when it is not `chosen_from`, `tried` (indices
/// into `chosen_from`'s backends) is mapped onto it, dropping backends it no
/// longer has.
fn follow_reload(
    slot: &ServiceSlot,
    chosen_from: Arc<Service>,
    tried: &mut SmallVec<[usize; 4]>,
) -> Arc<Service> {
    let live = slot.current();
    if Arc::ptr_eq(&live, &chosen_from) {
        return chosen_from;
    }
    let previous = chosen_from.backends();
    *tried = tried
        .iter()
        .filter_map(|&i| live.position(previous[i].address()))
        .collect();
    live
}

/// One connect attempt from the service's source (see `backend_socket`),
/// bounded by `connect_timeout`; the time taken feeds the backend's average.
async fn connect_once(
    backend: &Backend,
    config: &ServiceConfig,
    client: SocketAddr,
) -> io::Result<TcpStream> {
    let started = Instant::now();
    let timeout = config.connect_timeout;
    let connect = connect_tcp(&config.source, client, backend.addr());
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => {
            backend.record_connect_success(started.elapsed());
            Ok(stream)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {}", humantime::format_duration(timeout)),
        )),
    }
}

/// Connect errors caused by this process or host running short (descriptors,
/// memory, local ports, a source address it no longer has), or by a client
/// whose address cannot be the source (another family than the backend's),
/// not by the backend.
fn is_local_shortage(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
        )
}

/// Errors of `accept()` that concern only the one client that left before being
/// accepted; anything else (EMFILE, ENFILE, ENOBUFS, ENOMEM) means back off.
fn is_aborted_handshake(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(libc::EPROTO)
}
