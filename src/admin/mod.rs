//! The admin HTTP/1.1 endpoint: the HTML stats page (`/`, `/stats`), Prometheus
//! metrics, the `/status` document, the
//! `/healthz` probe, the `/ready` route-announcer check and the runtime API
//! (`POST /services/{name}/backends/{address}/drain|maint|ready`, and
//! `PUT`/`DELETE /services/{name}/backends/{address}`, `POST /services/{name}/backends`,
//! behind a bearer token when one is configured).
//!
//! Owns the public surface of the admin server: the [`AdminState`] trait the
//! runtime implements and the [`serve`] entry point. It does not own the live
//! state it reports (that is the runtime's), nor how metrics or status are
//! rendered (the runtime produces those strings).

mod body;
mod budget;
mod documents;
pub mod edits;
mod limits;
mod ready;
mod response;
mod routes;
mod server;
mod slots;
mod stats_page;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin endpoint serves; implemented by the runtime over live state.
pub trait AdminState: Send + Sync + 'static {
    /// Prometheus text exposition format (version 0.0.4).
    fn metrics_text(&self) -> String;
    /// The /status JSON document.
    fn status_json(&self) -> String;
    /// True once the process has begun shutting down.
    fn is_draining(&self) -> bool;
    /// Why the process cannot serve although it is not draining (say, a
    /// worker thread that has stopped running its loop); `None` when healthy.
    fn unhealthy(&self) -> Option<String> {
        None
    }
    /// The names of the services (every one, or only the one named `only`) that
    /// have no backend able to take a new client now; a 404 `ApiError` when
    /// `only` names no service.
    fn services_without_backends(&self, only: Option<&str>) -> Result<Vec<String>, ApiError>;
    /// Whether a runtime-API request with this `Authorization` header value may proceed.
    fn authorize(&self, authorization: Option<&str>) -> bool;
    /// Applies `action` (`drain`, `maint` or `ready`) to one backend of one service;
    /// the JSON body of the answer, or an error with its HTTP status.
    fn backend_action(
        &self,
        service: &str,
        backend: &str,
        action: &str,
    ) -> Result<String, ApiError>;
    /// Applies a backend edit (weight, add, remove); the JSON body of the answer.
    fn edit_backends(&self, edit: edits::BackendEdit) -> EditReply {
        let _ = edit;
        Box::pin(async {
            Err(ApiError {
                status: 503,
                message: "backend edits are not available".into(),
            })
        })
    }
}

/// The answer to a backend edit, when the runtime has applied it.
pub type EditReply = std::pin::Pin<Box<dyn Future<Output = Result<String, ApiError>> + Send>>;

/// A refused runtime-API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code (404 unknown service or backend, 400 unknown action, ...).
    pub status: u16,
    pub message: String,
}

/// Serves the admin endpoint on `listener` until `stop` is cancelled, then stops accepting
/// (open admin connections are closed promptly too — the admin server must never delay shutdown).
pub async fn serve(listener: TcpListener, state: Arc<dyn AdminState>, stop: CancellationToken) {
    server::serve_with_limits(listener, state, stop, limits::Limits::default()).await;
}
