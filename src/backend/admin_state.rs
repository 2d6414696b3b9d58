//! The operator's say over one backend, set through the runtime API: in rotation
//! (`Ready`), taking no new clients while open ones finish (`Drain`), or out with
//! its open sessions closed (`Maint`). It lives only in memory: a reload or a
//! restart starts every backend from `Ready`.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Ready = 0,
    Drain = 1,
    Maint = 2,
}

impl AdminState {
    /// The runtime API's name for the state (`ready`, `drain`, `maint`).
    pub fn from_action(action: &str) -> Option<AdminState> {
        match action {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }

    fn from_u8(value: u8) -> AdminState {
        match value {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

/// An `AdminState` readable without a lock.
#[derive(Debug, Default)]
pub struct AdminCell(AtomicU8);

impl AdminCell {
    pub fn get(&self) -> AdminState {
        AdminState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Sets the state; returns the previous one.
    pub fn set(&self, state: AdminState) -> AdminState {
        AdminState::from_u8(self.0.swap(state as u8, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_ready_and_remembers_the_last_state() {
        let cell = AdminCell::default();
        assert_eq!(cell.get(), AdminState::Ready);
        assert_eq!(cell.set(AdminState::Drain), AdminState::Ready);
        assert_eq!(cell.set(AdminState::Maint), AdminState::Drain);
        assert_eq!(cell.get(), AdminState::Maint);
    }

    #[test]
    fn actions_map_to_states() {
        assert_eq!(AdminState::from_action("drain"), Some(AdminState::Drain));
        assert_eq!(AdminState::from_action("maint"), Some(AdminState::Maint));
        assert_eq!(AdminState::from_action("ready"), Some(AdminState::Ready));
        assert_eq!(AdminState::from_action("up"), None);
    }
}
