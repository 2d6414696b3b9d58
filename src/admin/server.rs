//! The admin accept loop and per-connection HTTP/1.1 serving on hyper.
//!
//! Owns connection admission (through the `slots` table, which evicts rather
//! than refuses), accept-error backoff, hyper's connection settings, each
//! connection's lifetime bound and the shutdown sequence. Does not own routing
//! or response content (`routes` and `documents` do).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AdminState;
use super::budget::BodyBudget;
use super::documents::Documents;
use super::edits::{self, BackendEdit, MAX_EDIT_BODY};
use super::limits::Limits;
use super::response::{self, AdminResponse, JSON};
use super::routes::{self, EditTarget, Reply};
use super::slots::{Admitted, ConnectionSlots, Slot};

const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// [`super::serve`] with explicit limits. Returns once `stop` is cancelled and
/// every open connection has closed, which takes at most `limits.close_grace`.
pub(crate) async fn serve_with_limits(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    stop: CancellationToken,
    limits: Limits,
) {
    let limits = limits.sanitized();
    let slots = ConnectionSlots::new(limits.max_connections, limits.stalled_after);
    let admission = Admission {
        http: http1_builder(&limits),
        documents: Arc::new(Documents {
            budget: BodyBudget::new(limits.body_budget),
            slots: Arc::clone(&slots),
            wait: limits.body_wait,
        }),
        slots,
        connections: TaskTracker::new(),
        state,
        stop: stop.clone(),
        limits,
    };
    accept_until_stopped(&listener, &admission, &stop).await;
    drop(listener);
    admission.connections.close();
    admission.connections.wait().await;
}

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_buf_size)
        .keep_alive(true);
    builder
}

async fn accept_until_stopped(
    listener: &TcpListener,
    admission: &Admission,
    stop: &CancellationToken,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                admission.admit(stream, peer);
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "admin accept failed; backing off");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Doubling delay after consecutive accept errors, so that conditions such as
/// file-descriptor exhaustion do not turn the accept loop into a busy spin.
#[derive(Debug)]
struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: FIRST_ACCEPT_BACKOFF,
        }
    }
}

impl AcceptBackoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_ACCEPT_BACKOFF);
        delay
    }

    fn reset(&mut self) {
        self.next = FIRST_ACCEPT_BACKOFF;
    }
}

/// Everything needed to take on an accepted connection.
struct Admission {
    http: http1::Builder,
    slots: Arc<ConnectionSlots>,
    documents: Arc<Documents>,
    connections: TaskTracker,
    state: Arc<dyn AdminState>,
    stop: CancellationToken,
    limits: Limits,
}

impl Admission {
    /// Serves `stream` on its own task if it gets a slot (possibly by evicting
    /// an idle or stalled connection); otherwise closes it at once so that
    /// excess clients never wait in the kernel backlog.
    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let Some((slot, admitted)) = self.slots.admit(Instant::now()) else {
            tracing::debug!(%peer, "admin connections all busy sending; closing connection");
            return;
        };
        if admitted == Admitted::Evicted {
            tracing::debug!(%peer, "admin connection limit reached; evicted the longest idle or stalled one");
        }
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "admin connection: cannot set TCP_NODELAY");
        }
        let connection = serve_connection(
            self.http.clone(),
            stream,
            Arc::clone(&self.state),
            Arc::clone(&self.documents),
            slot,
            self.stop.clone(),
            self.limits,
        );
        self.connections.spawn(async move {
            connection.await;
            tracing::trace!(%peer, "admin connection closed");
        });
    }
}

/// How a connection's serving ended.
enum Ended {
    /// The client left, or hyper closed the connection.
    Finished(hyper::Result<()>),
    /// Another connection took its slot.
    Evicted,
    /// Its lifetime ran out, or the server is stopping.
    Closing,
}

/// Reads a backend edit's body (bounded), has the runtime apply it, and
/// answers with its result.
async fn edit(target: EditTarget, body: Incoming, state: &dyn AdminState) -> AdminResponse {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_EDIT_BODY);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let message =
                format!("cannot read the request body (at most {MAX_EDIT_BODY} bytes): {e}");
            return response::error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let EditTarget {
        method,
        service,
        backend,
    } = target;
    let parsed = match (method, backend) {
        (Method::PUT, Some(backend)) => edits::set_weight(service, backend, &bytes),
        (Method::DELETE, Some(backend)) => Ok(BackendEdit::Remove { service, backend }),
        (_, None) => edits::add(service, &bytes),
        (_, Some(backend)) => Ok(BackendEdit::Remove { service, backend }),
    };
    let outcome = match parsed {
        Ok(edit) => state.edit_backends(edit).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(body) => response::with_body(StatusCode::OK, JSON, body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            response::error(status, &e.message)
        }
    }
}

/// Serves HTTP/1.1 on one connection until the client leaves, the connection's
/// lifetime runs out, `stop` is cancelled or it is evicted. At the end of its
/// lifetime or on `stop`, in-flight responses get `limits.close_grace` to
/// finish before the connection is dropped; an evicted one is dropped at once.
/// The slot is given back when this returns.
async fn serve_connection(
    http: http1::Builder,
    stream: TcpStream,
    state: Arc<dyn AdminState>,
    documents: Arc<Documents>,
    slot: Slot,
    stop: CancellationToken,
    limits: Limits,
) {
    let tracker = slot.tracker();
    let service = service_fn(move |request: Request<Incoming>| {
        let reply = routes::handle(&request, state.as_ref());
        let (state, documents, tracker) =
            (Arc::clone(&state), Arc::clone(&documents), tracker.clone());
        async move {
            let response = match reply {
                Reply::Ready(response) => response,
                Reply::Document(document) => {
                    documents.serve(document, state.as_ref(), &tracker).await
                }
                Reply::Edit(target) => edit(target, request.into_body(), state.as_ref()).await,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let eviction = slot.eviction();
    let mut connection = pin!(http.serve_connection(TokioIo::new(stream), service));
    let ended = tokio::select! {
        result = connection.as_mut() => Ended::Finished(result),
        () = eviction.cancelled() => Ended::Evicted,
        () = tokio::time::sleep(limits.connection_lifetime) => Ended::Closing,
        () = stop.cancelled() => Ended::Closing,
    };
    match ended {
        Ended::Finished(Ok(())) => {}
        Ended::Finished(Err(error)) => {
            tracing::debug!(%error, "admin connection ended with an error")
        }
        Ended::Evicted => tracing::debug!("admin connection evicted to make room"),
        Ended::Closing => {
            connection.as_mut().graceful_shutdown();
            if tokio::time::timeout(limits.close_grace, connection)
                .await
                .is_err()
            {
                tracing::debug!("admin connection dropped after close grace period");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_from_10ms_up_to_1s() {
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[test]
    fn accept_backoff_resets_after_success() {
        let mut backoff = AcceptBackoff::default();
        backoff.next_delay();
        backoff.next_delay();
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST_ACCEPT_BACKOFF);
    }
}
