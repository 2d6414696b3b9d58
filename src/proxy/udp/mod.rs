//! UDP proxying: one receive loop per listen address, a flow core deciding
//! everything about flows, and one small task per flow relaying the backend's
//! replies back to the client from the service's own address.
//!
//! `flows` is the pure flow core (policy: ACL, bounds, reopening, expiry, flow
//! counts, PROXY headers, access-log choice, drops by reason) over `flow_table`
//! (pure bookkeeping); `flow_budget` bounds flows process-wide (their
//! descriptors); `socket` creates sockets; `batch` receives many datagrams per
//! system call; `send` sends one and judges a failure; `own_addresses` tells a
//! looped-back datagram from a client's; `view` shows a service to the core;
//! `listener` is the thin socket shell that carries out the core's actions.
//! Nothing queues datagrams: a datagram that cannot be sent right away is
//! dropped and counted, as the kernel would.

pub mod batch;
pub mod flow_budget;
pub mod flow_table;
pub mod flows;
pub mod handoff;
pub mod listener;
pub mod own_addresses;
pub mod send;
pub mod socket;
pub mod view;
