//! The binary-upgrade wire: what two l4lb processes say to each other on the
//! control socket, and how descriptors travel (SCM_RIGHTS).
//!
//! `protocol` is the versioned message set and its framing (length-prefixed
//! JSON); `fds` passes descriptors in batches; `control_path` prepares the
//! socket file (parent directory, mode 0600, a stale file replaced). Who says
//! what, and when, is the runtime's (`runtime::handoff` in the process that
//! hands over, `runtime::takeover` in its successor).

pub mod control_path;
pub mod fds;
pub mod plan;
pub mod protocol;
