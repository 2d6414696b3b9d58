//! `GET /ready`: whether a route announcer (a BGP speaker, a router's health
//! check, a cloud load balancer) should send this instance traffic.
//!
//! 200 `ready` only while the process is serving (not draining, no stalled
//! worker) *and* every service — or the one `?service=NAME` names — has at least
//! one backend able to take a new client. 503 names why; 404 names an unknown
//! service; 400 an unknown query. Like `/healthz` it needs no token: health
//! checkers poll it. This file reads the query and renders the answer; the
//! runtime says which services have no backend (`AdminState`).

use hyper::StatusCode;

use super::AdminState;
use super::response::{self, AdminResponse, PLAIN_TEXT};
use super::routes::percent_decode;

/// The answer to `GET /ready` with query string `query`.
pub(crate) fn ready(query: Option<&str>, state: &dyn AdminState) -> AdminResponse {
    let only = match service_parameter(query) {
        Ok(only) => only,
        Err(problem) => return response::error(StatusCode::BAD_REQUEST, &problem),
    };
    let lacking = match state.services_without_backends(only.as_deref()) {
        Ok(lacking) => lacking,
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::NOT_FOUND);
            return response::error(status, &e.message);
        }
    };
    if state.is_draining() {
        return unavailable("draining".to_owned());
    }
    if let Some(why) = state.unhealthy() {
        return unavailable(why);
    }
    if !lacking.is_empty() {
        return unavailable(format!("no backend available: {}", lacking.join(", ")));
    }
    response::with_body(StatusCode::OK, PLAIN_TEXT, "ready\n")
}

fn unavailable(why: String) -> AdminResponse {
    response::with_body(
        StatusCode::SERVICE_UNAVAILABLE,
        PLAIN_TEXT,
        format!("{why}\n"),
    )
}

/// The service `?service=NAME` names (percent-decoded), `None` without a query;
/// an error for any other parameter, so a typo never widens the check.
fn service_parameter(query: Option<&str>) -> Result<Option<String>, String> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let value = query
        .strip_prefix("service=")
        .filter(|v| !v.contains('&'))
        .ok_or_else(|| format!("unknown query \"{query}\": expected service=NAME"))?;
    let name = percent_decode(value)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("malformed service name \"{value}\""))?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_one_service_or_none() {
        assert_eq!(service_parameter(None), Ok(None));
        assert_eq!(service_parameter(Some("")), Ok(None));
        assert_eq!(service_parameter(Some("service=pg")), Ok(Some("pg".into())));
        assert_eq!(
            service_parameter(Some("service=a%2Eb")),
            Ok(Some("a.b".into()))
        );
        for bad in ["servce=pg", "service=", "service=pg&x=1", "service=%zz"] {
            assert!(service_parameter(Some(bad)).is_err(), "{bad}");
        }
    }
}
