//! `l4lb backend drain|maint|ready SERVICE ADDRESS`: one runtime-API request,
//! `POST /services/{service}/backends/{address}/{action}`, with the bearer
//! token from `--token-file` or `$L4LB_TOKEN`.
//!
//! Prints the change (`pg 10.0.0.11:5432: up -> draining`); a refusal (401,
//! 404, ...) prints the endpoint's own message and fails.

use std::path::Path;
use std::process::ExitCode;

use hyper::Method;

use super::http;
use crate::cli::BackendArgs;

/// The environment variable holding the token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "L4LB_TOKEN";

pub fn backend(args: &BackendArgs) -> ExitCode {
    super::run(&format!("backend {}", args.action.as_str()), act(args))
}

async fn act(args: &BackendArgs) -> Result<(), String> {
    let token = token(args.token_file.as_deref())?;
    let admin = &args.admin.admin;
    let path = format!(
        "/services/{}/backends/{}/{}",
        percent_encode(&args.service),
        percent_encode(&args.address),
        args.action.as_str()
    );
    let answer = http::request(admin, Method::POST, &path, token.as_deref()).await?;
    match answer.status {
        200 => {
            println!("{}", describe(&answer.body, &args.service, &args.address));
            Ok(())
        }
        401 => Err(format!(
            "admin endpoint {admin} answered 401: {} (give the [admin] token with \
             --token-file FILE or ${TOKEN_ENV})",
            answer.message()
        )),
        status => Err(format!(
            "admin endpoint {admin} answered {status}: {}",
            answer.message()
        )),
    }
}

/// The token from `file` (whitespace around it ignored), else from the
/// environment; `None` when neither gives one.
fn token(file: Option<&Path>) -> Result<Option<String>, String> {
    let Some(file) = file else {
        return Ok(std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty()));
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--token-file {}: {e}", file.display()))?;
    match text.trim() {
        "" => Err(format!(
            "--token-file {}: the file is empty",
            file.display()
        )),
        token => Ok(Some(token.to_string())),
    }
}

/// `service address: previous -> state`, from the API's answer.
fn describe(body: &str, service: &str, address: &str) -> String {
    let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let word = |key: &str| {
        answer
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "{service} {address}: {} -> {}",
        word("previous"),
        word("state")
    )
}

/// Every byte but unreserved ones (RFC 3986) as `%XX`, so `[::1]:80` survives a path.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_percent_encoded() {
        assert_eq!(percent_encode("10.0.0.1:5432"), "10.0.0.1%3A5432");
        assert_eq!(percent_encode("[::1]:80"), "%5B%3A%3A1%5D%3A80");
        assert_eq!(percent_encode("pg-1_a.b~"), "pg-1_a.b~");
    }

    #[test]
    fn the_answer_is_described_as_a_change() {
        let body = r#"{"service":"pg","backend":"a:1","previous":"up","state":"draining"}"#;
        assert_eq!(describe(body, "pg", "a:1"), "pg a:1: up -> draining");
    }

    #[test]
    fn a_token_file_is_trimmed_and_an_empty_one_refused() {
        let dir = std::env::temp_dir().join(format!("l4lb-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        assert_eq!(token(Some(&file)), Ok(Some("s3cret".into())));
        std::fs::write(&file, " \n").expect("write");
        let error = token(Some(&file)).expect_err("empty");
        assert!(error.ends_with("the file is empty"), "{error}");
        let missing = dir.join("missing");
        let error = token(Some(&missing)).expect_err("missing");
        assert!(
            error.starts_with(&format!("--token-file {}: ", missing.display())),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
