//! Which route of a service a TLS client goes to, from the server name and
//! ALPN protocols of its ClientHello. Pure: two hash lookups at most.
//!
//! An exact name beats a wildcard; `*.example.com` matches one label
//! (`a.example.com`, not `example.com` nor `a.b.example.com`). Among routes of
//! the same name, one that asks for ALPN protocols the client offers beats one
//! that asks for none. No match: the default route (0).

use std::collections::HashMap;

use crate::config::{RouteConfig, SniPattern};

/// One route listed under a name.
#[derive(Debug, Clone)]
struct Candidate {
    /// Route number: `i + 1` for `routes[i]`.
    route: usize,
    /// ALPN protocols the client must offer one of; empty = any.
    alpn: Vec<String>,
}

/// The routes of one service, by the names they match.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<Candidate>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Vec<Candidate>>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut router = Router::default();
        for (i, route) in routes.iter().enumerate() {
            for pattern in &route.sni {
                let (map, key) = match pattern {
                    SniPattern::Exact(name) => (&mut router.exact, name),
                    SniPattern::Wildcard(suffix) => (&mut router.wildcard, suffix),
                };
                let candidate = Candidate {
                    route: i + 1,
                    alpn: route.alpn.clone(),
                };
                map.entry(key.clone()).or_default().push(candidate);
            }
        }
        for list in router
            .exact
            .values_mut()
            .chain(router.wildcard.values_mut())
        {
            // Routes that ask for ALPN first (stable: config order otherwise).
            list.sort_by_key(|c| c.alpn.is_empty());
        }
        router
    }

    /// The route for a client that asked for `server_name` (lower-case) and
    /// offered `alpn`; 0 (the default route) when none matches.
    pub fn route_for(&self, server_name: &str, alpn: &[String]) -> usize {
        let pick = |list: Option<&Vec<Candidate>>| {
            list?
                .iter()
                .find(|c| c.alpn.is_empty() || alpn.iter().any(|p| c.alpn.contains(p)))
                .map(|c| c.route)
        };
        let wildcard = || {
            let (_, suffix) = server_name.split_once('.')?;
            pick(self.wildcard.get(suffix))
        };
        pick(self.exact.get(server_name))
            .or_else(wildcard)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StrategyConfig;

    fn route(sni: &[&str], alpn: &[&str]) -> RouteConfig {
        let pattern = |s: &&str| match s.strip_prefix("*.") {
            Some(suffix) => SniPattern::Wildcard(suffix.to_string()),
            None => SniPattern::Exact(s.to_string()),
        };
        RouteConfig {
            name: sni[0].to_string(),
            sni: sni.iter().map(pattern).collect(),
            alpn: alpn.iter().map(|a| a.to_string()).collect(),
            strategy: StrategyConfig::default(),
            max_connections: 0,
            allow: vec![],
            deny: vec![],
        }
    }

    #[test]
    fn exact_beats_wildcard_which_matches_one_label() {
        let router = Router::new(&[
            route(&["*.api.example.com"], &[]),
            route(&["db1.example.com", "v1.api.example.com"], &[]),
        ]);
        assert_eq!(router.route_for("x.api.example.com", &[]), 1);
        assert_eq!(router.route_for("v1.api.example.com", &[]), 2);
        assert_eq!(router.route_for("db1.example.com", &[]), 2);
        assert_eq!(router.route_for("api.example.com", &[]), 0);
        assert_eq!(router.route_for("a.b.api.example.com", &[]), 0);
        assert_eq!(router.route_for("other.example.com", &[]), 0);
    }

    #[test]
    fn a_route_asking_for_an_offered_alpn_wins() {
        let router = Router::new(&[
            route(&["a.example.com"], &[]),
            route(&["a.example.com"], &["h2"]),
        ]);
        let h2 = vec!["h2".to_string(), "http/1.1".to_string()];
        assert_eq!(router.route_for("a.example.com", &h2), 2);
        assert_eq!(router.route_for("a.example.com", &["http/1.1".into()]), 1);
        assert_eq!(router.route_for("a.example.com", &[]), 1);
        let only_h2 = Router::new(&[route(&["a.example.com"], &["h2"])]);
        assert_eq!(only_h2.route_for("a.example.com", &[]), 0);
    }
}
