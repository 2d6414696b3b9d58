//! Active health checks: one probe task per backend of each service that has a
//! `[service.health]` table.
//!
//! `probe` does one check over the network through the kind's [`probe::Probe`]
//! (one file per kind: `tcp`, `udp`, `postgres`, `redis`, `mysql`, `http`,
//! `dns`, `agent`; `wire` has their bounded reads); `checker` runs the probe
//! loop of one backend and writes its results into the backend
//! (`Backend::record_check`), which owns the rise/fall verdict. Passive checks
//! (outlier ejection) are recorded by the proxy on each connect and live in
//! `backend::outlier`; `ejection` logs when an ejection begins and when it runs
//! out.

mod agent;
pub mod checker;
mod dns;
pub mod ejection;
mod http;
mod mysql;
mod postgres;
pub mod probe;
mod redis;
mod tcp;
mod udp;
mod wire;

pub use checker::HealthChecker;
