//! The live view that the admin endpoint and the metrics collector read: the
//! running services with their bound addresses, the uptime, the configuration
//! generation and whether the process is draining.

use std::sync::Arc;
use std::time::Instant;

use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, ProxySample, SampleSource};
use crate::status::{ServiceView, Status, metrics_sample};

#[derive(Debug)]
pub struct LiveState {
    pub services: Vec<ServiceView>,
    pub started: Instant,
    pub generation: u64,
    pub lifecycle: Lifecycle,
    pub metrics: Arc<Metrics>,
}

impl LiveState {
    pub fn status(&self) -> Status {
        Status::now(
            &self.services,
            self.started.elapsed(),
            self.generation,
            self.is_draining(),
        )
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.stop_accepting.is_cancelled()
    }
}

impl SampleSource for LiveState {
    fn sample(&self) -> ProxySample {
        metrics_sample(&self.services)
    }
}
