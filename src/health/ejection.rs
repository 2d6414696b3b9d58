//! The log lines of a passive ejection: when it begins (from the proxy, on the
//! connect failure that caused it) and, when it runs its whole `ejection_time`,
//! when it ends — so no change of a backend's availability goes unlogged. An
//! ejection that a passing health check ends early is logged by the checker.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::Backend;

/// Logs that `backend` of `service` was just ejected, and starts a timer (on the
/// current tokio runtime, ended by `stop`) that logs the end of the ejection if
/// it runs its course.
pub fn announce(
    service: &str,
    backend: &Arc<Backend>,
    last_error: &dyn Display,
    stop: CancellationToken,
) {
    let Some(settings) = backend.outlier_settings() else {
        return;
    };
    warn!(service, backend = backend.address(),
        consecutive_failures = settings.threshold,
        ejection_time = %humantime::format_duration(settings.ejection_time),
        last_error = %last_error, "backend ejected: too many connect failures in a row");
    let Some(mark) = backend.identity().outlier.current_ejection(Instant::now()) else {
        return;
    };
    let (service, backend) = (service.to_string(), Arc::clone(backend));
    tokio::spawn(async move {
        let left = backend.ejected_for(Instant::now()).unwrap_or_default();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(left) => {}
        }
        if backend.identity().outlier.ran_out(mark, Instant::now()) {
            info!(
                service,
                backend = backend.address(),
                healthy = backend.is_healthy(),
                "backend ejection over: ejection_time elapsed, offered to new clients again"
            );
        }
    });
}
