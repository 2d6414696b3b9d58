//! Request routing for the admin endpoint: maps a method and path to a
//! [`Route`] and renders that route's response from [`AdminState`]. Does not
//! own connections, limits or HTTP framing (the `server` module and hyper do).
//!
//! Adding an endpoint means adding an [`Endpoint`] variant, its path in
//! [`Endpoint::from_path`], its methods in [`Endpoint::allowed`] and its
//! response in [`respond`].

use hyper::header::HOST;
use hyper::{Method, Request, StatusCode, Version};

use super::AdminState;
use super::budget::Document;
use super::response::{self, AdminResponse, JSON, PLAIN_TEXT};

/// A resource the admin endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/` and `/stats`: the HTML stats page.
    StatsPage,
    Metrics,
    Status,
    Healthz,
    /// `/ready` (`?service=NAME`).
    Ready,
    /// `/services/{name}/backends/{address}/{action}`.
    BackendAction,
    /// `/services/{name}/backends`: add one.
    Backends,
    /// `/services/{name}/backends/{address}`: change its weight, or remove it.
    Backend,
}

/// The set of methods an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedMethods {
    /// Read-only resources: GET, and HEAD for the same headers without a body.
    GetOrHead,
    /// Actions.
    Post,
    /// Changes to one backend.
    PutOrDelete,
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
            "/" | "/stats" => Some(Self::StatsPage),
            "/metrics" => Some(Self::Metrics),
            "/status" => Some(Self::Status),
            "/healthz" => Some(Self::Healthz),
            "/ready" => Some(Self::Ready),
            _ if BackendActionPath::parse(path).is_some() => Some(Self::BackendAction),
            _ => match BackendPath::parse(path)?.backend {
                Some(_) => Some(Self::Backend),
                None => Some(Self::Backends),
            },
        }
    }

    fn allowed(self) -> AllowedMethods {
        match self {
            Self::StatsPage | Self::Metrics | Self::Status | Self::Healthz | Self::Ready => {
                AllowedMethods::GetOrHead
            }
            Self::BackendAction | Self::Backends => AllowedMethods::Post,
            Self::Backend => AllowedMethods::PutOrDelete,
        }
    }
}

impl AllowedMethods {
    fn permits(self, method: &Method) -> bool {
        match self {
            Self::GetOrHead => method == Method::GET || method == Method::HEAD,
            Self::Post => method == Method::POST,
            Self::PutOrDelete => method == Method::PUT || method == Method::DELETE,
        }
    }

    /// The value of the `Allow` header in a 405 response.
    fn header_value(self) -> &'static str {
        match self {
            Self::GetOrHead => "GET, HEAD",
            Self::Post => "POST",
            Self::PutOrDelete => "PUT, DELETE",
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

/// How a request is answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// This response, at once.
    Ready(AdminResponse),
    /// A large document, rendered within the memory budget (`documents`).
    Document(Document),
    /// A backend edit (authorized): its body is read, then the runtime applies it.
    Edit(EditTarget),
}

/// What a backend edit request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditTarget {
    pub method: Method,
    pub service: String,
    /// `None` for `POST /services/{name}/backends`.
    pub backend: Option<String>,
}

/// Answers one request. The request body is never read.
pub(crate) fn handle<B>(request: &Request<B>, state: &dyn AdminState) -> Reply {
    if let Some(problem) = host_problem(request) {
        return Reply::Ready(response::error(StatusCode::BAD_REQUEST, problem));
    }
    let path = request.uri().path();
    let response = match route(request.method(), path) {
        Route::Serve(Endpoint::StatsPage) => super::stats_page::respond(state),
        Route::Serve(Endpoint::Metrics) => return Reply::Document(Document::Metrics),
        Route::Serve(Endpoint::Status) => return Reply::Document(Document::Status),
        Route::Serve(Endpoint::Healthz) => healthz(state),
        Route::Serve(Endpoint::Ready) => super::ready::ready(request.uri().query(), state),
        Route::Serve(Endpoint::BackendAction) => backend_action(request, path, state),
        Route::Serve(Endpoint::Backends | Endpoint::Backend) => {
            return edit_target(request, path, state);
        }
        Route::MethodNotAllowed(endpoint) => {
            response::method_not_allowed(endpoint.allowed().header_value())
        }
        Route::NotFound => response::not_found(path),
    };
    Reply::Ready(response)
}

/// What is wrong with the request's `Host` header, as RFC 9112 section 3.2
/// has it: an HTTP/1.1 request needs one (HTTP/1.0 may go without), and no
/// request may carry two.
fn host_problem<B>(request: &Request<B>) -> Option<&'static str> {
    match request.headers().get_all(HOST).iter().count() {
        0 if request.version() == Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header")
        }
        0 | 1 => None,
        _ => Some("more than one Host header"),
    }
}

/// The parts of `/services/{name}/backends/{address}/{action}` (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BackendActionPath {
    service: String,
    backend: String,
    action: String,
}

impl BackendActionPath {
    fn parse(path: &str) -> Option<BackendActionPath> {
        let mut parts = path.strip_prefix("/services/")?.split('/');
        let service = percent_decode(parts.next()?)?;
        if parts.next()? != "backends" {
            return None;
        }
        let backend = percent_decode(parts.next()?)?;
        let action = percent_decode(parts.next()?)?;
        let complete =
            parts.next().is_none() && ![&service, &backend, &action].iter().any(|p| p.is_empty());
        complete.then_some(BackendActionPath {
            service,
            backend,
            action,
        })
    }
}

/// The parts of `/services/{name}/backends[/{address}]` (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BackendPath {
    service: String,
    backend: Option<String>,
}

impl BackendPath {
    fn parse(path: &str) -> Option<BackendPath> {
        let mut parts = path.strip_prefix("/services/")?.split('/');
        let service = percent_decode(parts.next()?)?;
        if parts.next()? != "backends" || service.is_empty() {
            return None;
        }
        let backend = match parts.next() {
            None => None,
            Some(text) => Some(percent_decode(text).filter(|b| !b.is_empty())?),
        };
        parts
            .next()
            .is_none()
            .then_some(BackendPath { service, backend })
    }
}

/// Checks the token of a backend edit and names what it changes.
fn edit_target<B>(request: &Request<B>, path: &str, state: &dyn AdminState) -> Reply {
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.authorize(authorization) {
        let refused = response::error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        return Reply::Ready(refused);
    }
    match BackendPath::parse(path) {
        Some(target) => Reply::Edit(EditTarget {
            method: request.method().clone(),
            service: target.service,
            backend: target.backend,
        }),
        None => Reply::Ready(response::not_found(path)),
    }
}

/// Decodes `%XX` escapes (e.g. `%5B%3A%3A1%5D%3A80` for `[::1]:80`); `None` when malformed.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn backend_action<B>(request: &Request<B>, path: &str, state: &dyn AdminState) -> AdminResponse {
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.authorize(authorization) {
        return response::error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Some(target) = BackendActionPath::parse(path) else {
        return response::not_found(path);
    };
    match state.backend_action(&target.service, &target.backend, &target.action) {
        Ok(body) => response::with_body(StatusCode::OK, JSON, body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            response::error(status, &e.message)
        }
    }
}

fn healthz(state: &dyn AdminState) -> AdminResponse {
    if state.is_draining() {
        return response::with_body(StatusCode::SERVICE_UNAVAILABLE, PLAIN_TEXT, "draining\n");
    }
    match state.unhealthy() {
        Some(why) => response::with_body(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN_TEXT,
            format!("{why}\n"),
        ),
        None => response::with_body(StatusCode::OK, PLAIN_TEXT, "ok\n"),
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
            ("/ready", Endpoint::Ready),
            ("/", Endpoint::StatsPage),
            ("/stats", Endpoint::StatsPage),
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
        for path in [
            "",
            "/index.html",
            "/stats/",
            "/metrics/",
            "/Metrics",
            "/healthz/x",
            "*",
        ] {
            assert_eq!(route(&Method::GET, path), Route::NotFound);
            assert_eq!(route(&Method::POST, path), Route::NotFound);
        }
    }

    #[test]
    fn backend_action_paths_parse_and_decode() {
        let parsed = BackendActionPath::parse("/services/pg/backends/%5B%3A%3A1%5D%3A5432/drain");
        assert_eq!(
            parsed,
            Some(BackendActionPath {
                service: "pg".into(),
                backend: "[::1]:5432".into(),
                action: "drain".into(),
            })
        );
        assert_eq!(
            route(&Method::POST, "/services/pg/backends/10.0.0.1:5432/maint"),
            Route::Serve(Endpoint::BackendAction)
        );
        assert_eq!(
            route(&Method::GET, "/services/pg/backends/10.0.0.1:5432/maint"),
            Route::MethodNotAllowed(Endpoint::BackendAction)
        );
        for bad in [
            "/services/pg/backends/a/drain/extra",
            "/services/pg/nodes/a/drain",
            "/services//backends/a/drain",
            "/services/pg/backends/%zz/drain",
            "/services//backends",
            "/services/pg/backends/%zz",
        ] {
            assert_eq!(route(&Method::POST, bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn backend_paths_route_for_edits() {
        assert_eq!(
            route(&Method::POST, "/services/pg/backends"),
            Route::Serve(Endpoint::Backends)
        );
        for method in [Method::PUT, Method::DELETE] {
            assert_eq!(
                route(&method, "/services/pg/backends/10.0.0.1:5432"),
                Route::Serve(Endpoint::Backend)
            );
        }
        assert_eq!(
            route(&Method::POST, "/services/pg/backends/10.0.0.1:5432"),
            Route::MethodNotAllowed(Endpoint::Backend)
        );
        assert_eq!(
            BackendPath::parse("/services/pg/backends/%5B%3A%3A1%5D%3A80"),
            Some(BackendPath {
                service: "pg".into(),
                backend: Some("[::1]:80".into())
            })
        );
    }

    /// A process whose first worker stopped running its loop.
    struct StalledWorker;

    impl AdminState for StalledWorker {
        fn metrics_text(&self) -> String {
            String::new()
        }
        fn status_json(&self) -> String {
            "{}".into()
        }
        fn is_draining(&self) -> bool {
            false
        }
        fn unhealthy(&self) -> Option<String> {
            Some("stalled: l4lb-worker-0 has not run for 4.0 s".into())
        }
        fn authorize(&self, _: Option<&str>) -> bool {
            true
        }
        fn services_without_backends(
            &self,
            _: Option<&str>,
        ) -> Result<Vec<String>, super::super::ApiError> {
            Ok(Vec::new())
        }
        fn backend_action(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<String, super::super::ApiError> {
            Ok(String::new())
        }
    }

    #[test]
    fn healthz_fails_while_a_worker_is_stalled() {
        assert_eq!(
            healthz(&StalledWorker).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn ready_fails_while_a_worker_is_stalled() {
        let response = super::super::ready::ready(None, &StalledWorker);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn read_only_endpoints_allow_get_and_head() {
        assert_eq!(AllowedMethods::GetOrHead.header_value(), "GET, HEAD");
    }
}
