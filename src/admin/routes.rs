//! Request routing for the admin endpoint: maps a method and path to a
//! [`Route`] and renders that route's response from [`AdminState`]. Does not
//! own connections, limits or HTTP framing (the `server` module and hyper do).
//!
//! Adding an endpoint means adding an [`Endpoint`] variant, its path in
//! [`Endpoint::from_path`], its methods in [`Endpoint::allowed`] and its
//! response in [`respond`].

use hyper::{Method, Request, StatusCode};

use super::AdminState;
use super::response::{self, AdminResponse, JSON, PLAIN_TEXT, PROMETHEUS_TEXT};

/// A resource the admin endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Metrics,
    Status,
    Healthz,
}

/// The set of methods an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedMethods {
    /// Read-only resources: GET, and HEAD for the same headers without a body.
    GetOrHead,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Serve(Endpoint),
    MethodNotAllowed(Endpoint),
    NotFound,
}

impl Endpoint {
    /// The endpoint at `path` (query string already stripped), if any.
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/metrics" => Some(Self::Metrics),
            "/status" => Some(Self::Status),
            "/healthz" => Some(Self::Healthz),
            _ => None,
        }
    }

    fn allowed(self) -> AllowedMethods {
        match self {
            Self::Metrics | Self::Status | Self::Healthz => AllowedMethods::GetOrHead,
        }
    }
}

impl AllowedMethods {
    fn permits(self, method: &Method) -> bool {
        match self {
            Self::GetOrHead => method == Method::GET || method == Method::HEAD,
        }
    }

    /// The value of the `Allow` header in a 405 response.
    fn header_value(self) -> &'static str {
        match self {
            Self::GetOrHead => "GET, HEAD",
        }
    }
}

/// Routes by method and path only; the query string plays no part.
pub(crate) fn route(method: &Method, path: &str) -> Route {
    match Endpoint::from_path(path) {
        None => Route::NotFound,
        Some(endpoint) if endpoint.allowed().permits(method) => Route::Serve(endpoint),
        Some(endpoint) => Route::MethodNotAllowed(endpoint),
    }
}

/// Answers one request. The request body is never read.
pub(crate) fn handle<B>(request: &Request<B>, state: &dyn AdminState) -> AdminResponse {
    let path = request.uri().path();
    match route(request.method(), path) {
        Route::Serve(endpoint) => respond(endpoint, state),
        Route::MethodNotAllowed(endpoint) => {
            response::method_not_allowed(endpoint.allowed().header_value())
        }
        Route::NotFound => response::not_found(path),
    }
}

fn respond(endpoint: Endpoint, state: &dyn AdminState) -> AdminResponse {
    match endpoint {
        Endpoint::Metrics => {
            response::with_body(StatusCode::OK, PROMETHEUS_TEXT, state.metrics_text())
        }
        Endpoint::Status => response::with_body(StatusCode::OK, JSON, state.status_json()),
        Endpoint::Healthz => healthz(state),
    }
}

fn healthz(state: &dyn AdminState) -> AdminResponse {
    if state.is_draining() {
        response::with_body(StatusCode::SERVICE_UNAVAILABLE, PLAIN_TEXT, "draining\n")
    } else {
        response::with_body(StatusCode::OK, PLAIN_TEXT, "ok\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route_for_get_and_head() {
        for (path, endpoint) in [
            ("/metrics", Endpoint::Metrics),
            ("/status", Endpoint::Status),
            ("/healthz", Endpoint::Healthz),
        ] {
            assert_eq!(route(&Method::GET, path), Route::Serve(endpoint));
            assert_eq!(route(&Method::HEAD, path), Route::Serve(endpoint));
        }
    }

    #[test]
    fn known_paths_reject_other_methods() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(
                route(&method, "/metrics"),
                Route::MethodNotAllowed(Endpoint::Metrics)
            );
        }
    }

    #[test]
    fn unknown_paths_are_not_found_for_any_method() {
        for path in ["/", "/metrics/", "/Metrics", "/healthz/x", "*"] {
            assert_eq!(route(&Method::GET, path), Route::NotFound);
            assert_eq!(route(&Method::POST, path), Route::NotFound);
        }
    }

    #[test]
    fn read_only_endpoints_allow_get_and_head() {
        assert_eq!(AllowedMethods::GetOrHead.header_value(), "GET, HEAD");
    }
}
