//! The stats page at `GET /` and `GET /stats`: one self-contained HTML
//! document (no external asset: its style and script are inline) whose script
//! polls `/status` every 2 s and draws every service and backend from it.
//!
//! Owns the page's bytes (`stats_page.html`, embedded at build time) and the
//! one thing the server decides about it: whether the runtime-API buttons are
//! shown, which they are only when a token is configured. Does not own the
//! data (the page reads `/status` like any client) nor the runtime API.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};

use super::AdminState;
use super::response::{self, AdminResponse};

/// The page, with `__L4LB_TOKEN_REQUIRED__` still to be filled in.
const PAGE: &str = include_str!("stats_page.html");

/// Where the page says whether the runtime API needs a token.
const TOKEN_MARKER: &str = "__L4LB_TOKEN_REQUIRED__";

const HTML: &str = "text/html; charset=utf-8";

/// Nothing but the page itself and requests back to this endpoint.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/// The page for a process whose runtime API does (or does not) need a token.
pub(crate) fn render(token_required: bool) -> String {
    PAGE.replacen(
        TOKEN_MARKER,
        if token_required { "true" } else { "false" },
        1,
    )
}

/// `200` with the page; the runtime API needs a token when a request without
/// one is not authorized.
pub(crate) fn respond(state: &dyn AdminState) -> AdminResponse {
    let mut response = response::with_body(StatusCode::OK, HTML, render(!state.authorize(None)));
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_filled_in_once() {
        assert_eq!(PAGE.matches(TOKEN_MARKER).count(), 1);
        assert!(render(true).contains("data-token-required=\"true\""));
        assert!(render(false).contains("data-token-required=\"false\""));
        assert!(!render(false).contains(TOKEN_MARKER));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for outside in ["http://", "https://", "//cdn", "<link", "src=\"", "@import"] {
            assert!(!PAGE.contains(outside), "the page contains {outside}");
        }
    }
}
