//! Features the configuration can describe but this build of l4lb does not
//! implement yet. Each use is an error (`not supported yet: ...`) at its key,
//! so nothing is silently ignored.
//!
//! This file owns only the list below: when a feature lands, delete its line.
//! The values themselves are still parsed and validated by `validate.rs`, and
//! the model keeps every field.

use super::file::{Field, RawDocument, ServiceEntry};
use super::paths;
use super::report::{Report, Span};

/// One feature refused by this build, and how to find a use of it.
struct Feature<T> {
    /// Shown as `not supported yet: {what}`.
    what: &'static str,
    /// The key named in the error.
    key: &'static str,
    /// Where `T` uses the feature, if it does.
    used: fn(&T) -> Option<Span>,
}

const SERVICE_FEATURES: &[Feature<ServiceEntry>] = &[
    Feature {
        what: "sending PROXY protocol headers to backends",
        key: "proxy_protocol",
        used: |s| equals(&s.fields.value.proxy_protocol, &["v1", "v2"]),
    },
    Feature {
        what: "accepting PROXY protocol headers from clients",
        key: "accept_proxy_protocol",
        used: |s| is_true(&s.fields.value.accept_proxy_protocol),
    },
];

/// Reports every use of a feature this build does not implement.
pub fn check(doc: &RawDocument, report: &mut Report) {
    for service in &doc.services {
        report_uses(SERVICE_FEATURES, service, &service.fields.path, report);
    }
}

fn report_uses<T>(features: &[Feature<T>], item: &T, path: &str, report: &mut Report) {
    for feature in features {
        if let Some(span) = (feature.used)(item) {
            let message = format!("not supported yet: {}", feature.what);
            report.at(&span, &paths::join(path, feature.key), message);
        }
    }
}

fn equals(field: &Field<String>, values: &[&str]) -> Option<Span> {
    field
        .as_ref()
        .filter(|f| values.contains(&f.get_ref().as_str()))
        .map(|f| f.span())
}

fn is_true(field: &Field<bool>) -> Option<Span> {
    field.as_ref().filter(|f| *f.get_ref()).map(|f| f.span())
}
