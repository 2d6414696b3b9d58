//! l4lb: a Layer-4 (TCP and UDP) load balancer.
//!
//! # Layout
//! - [`cli`]: command-line definitions (clap).
//! - [`logging`]: the checked log filter and the subscriber: stderr (colour only on a
//!   terminal) or syslog.
//! - [`ctl`]: `l4lb status` and `l4lb backend`: a running l4lb's admin endpoint as a
//!   table, JSON, and runtime-API actions.
//! - [`manual`]: `l4lb completions` and `l4lb manpage`, generated from the clap definitions.
//! - [`config`]: `lb.toml` → raw structs → validated [`config::Config`], every error collected.
//! - [`discovery`]: backends found in DNS (`[[service.discover]]`): policy, lookups, group loops.
//! - [`backend`]: one backend's identity and live counters; the RAII connection guard.
//! - [`balancer`]: the `Strategy` trait and the eight strategies; pure, no I/O.
//! - [`acl`]: allow / deny CIDR lists.
//! - [`limit`]: connection caps (process, service, per source IP) as RAII permits.
//! - [`service`]: a running service: its backends, strategy, admission and counters.
//! - [`proxy`]: listening sockets, accept loops, sessions and the byte relay.
//! - [`health`]: active probes, one file per kind (tcp, udp, postgres, redis, mysql, http,
//!   dns, agent) behind one `Probe` trait, and the probe loop of one backend.
//! - [`metrics`]: the Prometheus registry, histograms and the scrape-time collector.
//! - [`status`]: the `/status` document and metrics sample, read from live state.
//! - [`admin`]: the hyper admin server: routes, limits, responses.
//! - [`notify`]: sd_notify (READY, RELOADING, STOPPING, STATUS, WATCHDOG, MAINPID).
//! - [`socket_activation`]: listening sockets systemd passes (`LISTEN_FDS`).
//! - [`fd_store`]: listening sockets kept in systemd's file-descriptor store.
//! - [`random`]: fast per-thread pseudo-random numbers and jitter (not for secrets).
//! - [`lifecycle`]: the withdraw / stop-accepting / close-sessions signals and the session tracker.
//! - [`log_throttle`]: rate limit for repeated warnings.
//! - [`simulate`]: `l4lb simulate`: the real service logic against simulated backends on a
//!   virtual clock (arrivals, capacities, outages, reloads), reported per backend.
//! - [`runtime`]: wiring config to services and tasks on per-core worker runtimes;
//!   serving and draining; binary upgrades (handing sockets and UDP flows over).
//! - [`upgrade`]: the binary-upgrade wire: versioned messages, descriptor passing
//!   (SCM_RIGHTS), the control socket's file, what an upgrade would reuse.
//!
//! Dependencies point one way: `runtime` uses everything; `proxy` uses `service`,
//! `backend`, `limit`; `service` uses `balancer`, `backend`, `limit`; `balancer` uses
//! `backend` (and the strategy settings of `config`); `upgrade` uses `config` and the
//! UDP flow state of `proxy`; `config` uses nothing of ours.

pub mod acl;
pub mod admin;
pub mod backend;
pub mod balancer;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod discovery;
pub mod fd_store;
pub mod health;
pub mod lifecycle;
pub mod limit;
pub mod log_throttle;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod random;
pub mod runtime;
pub mod service;
pub mod simulate;
pub mod socket_activation;
pub mod status;
pub mod upgrade;
