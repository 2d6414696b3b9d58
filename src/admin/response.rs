//! Response construction for the admin endpoint: content types, plain and JSON
//! bodies, the JSON error documents and the string escaper they use. Does not
//! decide which response a request gets (the `routes` module does).

use bytes::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::body::{AdminBody, Hold};

/// Every admin response carries a complete, in-memory body, sent in chunks.
pub(crate) type AdminResponse = Response<AdminBody>;

/// Prometheus text exposition format, version 0.0.4.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub(crate) const JSON: &str = "application/json";
pub(crate) const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// A response with `status`, a `Content-Type` and `body`. hyper derives
/// `Content-Length` from the body and omits the body itself for HEAD requests.
pub(crate) fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> AdminResponse {
    with_held_body(status, content_type, body, Hold::default())
}

/// [`with_body`] whose body keeps `hold` until it has been sent.
pub(crate) fn with_held_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    hold: Hold,
) -> AdminResponse {
    let mut response = Response::new(AdminBody::holding(body, hold));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 503 with `Retry-After: 1`: the memory budget for documents in flight is
/// taken (by clients that are slow to read theirs).
pub(crate) fn budget_exhausted() -> AdminResponse {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many large responses are still being sent; retry shortly",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 405 with an `Allow` header listing the methods the path does answer.
pub(crate) fn method_not_allowed(allow: &'static str) -> AdminResponse {
    let mut response = with_body(
        StatusCode::METHOD_NOT_ALLOWED,
        JSON,
        r#"{"error":"method not allowed"}"#,
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// A JSON error body with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> AdminResponse {
    let body = format!("{{\"error\":{}}}", json_string(message));
    with_body(status, JSON, body)
}

/// 404 naming the requested path.
pub(crate) fn not_found(path: &str) -> AdminResponse {
    let body = format!(r#"{{"error":"not found","path":{}}}"#, json_string(path));
    with_body(StatusCode::NOT_FOUND, JSON, body)
}

/// `text` as a quoted JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        push_json_escaped(&mut quoted, ch);
    }
    quoted.push('"');
    quoted
}

fn push_json_escaped(out: &mut String, ch: char) {
    match ch {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{08}' => out.push_str("\\b"),
        '\u{0C}' => out.push_str("\\f"),
        c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn json_string_quotes_plain_text() {
        assert_eq!(json_string("/x"), r#""/x""#);
        assert_eq!(json_string(""), r#""""#);
    }

    #[test]
    fn json_string_escapes_quotes_backslashes_and_controls() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(json_string("\u{0}\u{1f}"), r#""\u0000\u001f""#);
    }

    #[test]
    fn json_string_keeps_non_ascii() {
        assert_eq!(json_string("/é✓"), "\"/é✓\"");
    }

    #[tokio::test]
    async fn not_found_embeds_escaped_path() {
        let response = not_found("/a\"b");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"error":"not found","path":"/a\"b"}"#);
    }

    #[test]
    fn method_not_allowed_lists_allowed_methods() {
        let response = method_not_allowed("GET, HEAD");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
    }
}
