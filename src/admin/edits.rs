//! The runtime API's backend changes: `PUT /services/{name}/backends/{address}`
//! (`{"weight": 3}`), `POST /services/{name}/backends` (`{"address": ...}`)
//! and `DELETE /services/{name}/backends/{address}`, read from their JSON
//! bodies into a [`BackendEdit`]. Pure: the runtime applies edits.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ApiError;

/// The largest request body read (the documents are a few dozen bytes).
pub const MAX_EDIT_BODY: usize = 16 * 1024;

/// One change to a service's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEdit {
    SetWeight {
        service: String,
        backend: String,
        weight: u32,
    },
    Add {
        service: String,
        backend: NewBackend,
    },
    Remove {
        service: String,
        backend: String,
    },
}

impl BackendEdit {
    pub fn service(&self) -> &str {
        match self {
            Self::SetWeight { service, .. }
            | Self::Add { service, .. }
            | Self::Remove { service, .. } => service,
        }
    }
}

/// The settings of a backend added at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackend {
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub max_connections: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    address: String,
    #[serde(default = "one")]
    weight: i64,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    max_connections: usize,
}

fn one() -> i64 {
    1
}

fn bad_request(message: String) -> ApiError {
    ApiError {
        status: 400,
        message,
    }
}

fn checked_weight(weight: i64) -> Result<u32, ApiError> {
    match u32::try_from(weight) {
        Ok(w) if (1..=1000).contains(&w) => Ok(w),
        _ => Err(bad_request(format!(
            "weight: must be between 1 and 1000, got {weight}"
        ))),
    }
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8], example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("invalid JSON body ({e}); expected e.g. {example}")))
}

/// `PUT`'s body: the new weight.
pub fn set_weight(service: String, backend: String, body: &[u8]) -> Result<BackendEdit, ApiError> {
    let parsed: WeightBody = json(body, "{\"weight\": 3}")?;
    Ok(BackendEdit::SetWeight {
        service,
        backend,
        weight: checked_weight(parsed.weight)?,
    })
}

/// `POST`'s body: the backend to add.
pub fn add(service: String, body: &[u8]) -> Result<BackendEdit, ApiError> {
    let example = "{\"address\": \"10.0.0.12:5432\", \"weight\": 1, \"backup\": false}";
    let parsed: AddBody = json(body, example)?;
    let address = parsed.address.parse::<SocketAddr>().map_err(|_| {
        bad_request(format!(
            "address: invalid address \"{}\": expected IP:port or [IPv6]:port \
             (host names are not looked up by the runtime API)",
            parsed.address
        ))
    })?;
    if address.port() == 0 {
        return Err(bad_request("address: port 0 cannot be connected to".into()));
    }
    Ok(BackendEdit::Add {
        service,
        backend: NewBackend {
            address,
            weight: checked_weight(parsed.weight)?,
            backup: parsed.backup,
            max_connections: parsed.max_connections,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_checked() {
        let edit = set_weight("pg".into(), "a".into(), br#"{"weight": 3}"#).unwrap();
        assert!(matches!(edit, BackendEdit::SetWeight { weight: 3, .. }));
        let zero = set_weight("pg".into(), "a".into(), br#"{"weight": 0}"#).unwrap_err();
        assert_eq!(zero.message, "weight: must be between 1 and 1000, got 0");
        let typo = set_weight("pg".into(), "a".into(), br#"{"wieght": 3}"#).unwrap_err();
        assert!(
            typo.message.contains("unknown field `wieght`"),
            "{}",
            typo.message
        );
    }

    #[test]
    fn added_backends_need_an_ip_address() {
        let edit = add(
            "pg".into(),
            br#"{"address": "127.0.0.1:80", "backup": true}"#,
        )
        .unwrap();
        let BackendEdit::Add { backend, .. } = edit else {
            panic!("not an add")
        };
        assert_eq!((backend.weight, backend.backup), (1, true));
        let named = add("pg".into(), br#"{"address": "db.example:80"}"#).unwrap_err();
        assert!(
            named.message.starts_with("address: invalid address"),
            "{}",
            named.message
        );
    }
}
