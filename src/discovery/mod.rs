//! Backends found in DNS: `[[service.discover]]` groups.
//!
//! `policy` is the pure core (what an answer, an empty answer or a resolver
//! error does to a group's set, and when to ask again; time is an input);
//! `lookup` asks DNS with the asynchronous `hickory-resolver`; `task` is the
//! thin loop of one group on the control runtime (never on the data path);
//! `compose` turns a service's static backends and its groups' sets into the
//! backend list the runtime applies as a diff, exactly as a reload does. This
//! module does not change services itself: it tells the runtime which service
//! to recompose.

pub mod compose;
pub mod lookup;
pub mod policy;
pub mod task;

pub use policy::{Found, GroupState, Outcome};
pub use task::{Group, GroupStatus, spawn_group};
