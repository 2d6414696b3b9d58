//! Active health checks: one probe task per backend of each service that has a
//! `[service.health]` table.
//!
//! `probe` does one check over the network; `checker` runs the probe loop of one
//! backend and writes its results into the backend (`Backend::record_check`), which
//! owns the rise/fall verdict. Passive checks (outlier ejection) are recorded by
//! the proxy on each connect and live in `backend::outlier`; `ejection` logs when
//! an ejection begins and when it runs out.

pub mod checker;
pub mod ejection;
pub mod probe;

pub use checker::HealthChecker;
