//! UDP proxying: one receive loop per listen address, a flow table mapping each
//! client to its backend, and one small task per flow relaying the backend's
//! replies back to the client from the service's own address.
//!
//! `flow_table` is pure bookkeeping; `flow_budget` bounds flows process-wide
//! (their descriptors); `socket` creates sockets; `batch` receives
//! many datagrams per system call; `send` sends one and judges a failure;
//! `own_addresses` tells a looped-back datagram from a client's;
//! `listener` owns the receive loop and the per-flow reply tasks. Nothing queues
//! datagrams: a datagram that cannot be sent right away is dropped and counted,
//! as the kernel would.

pub mod batch;
pub mod flow_budget;
pub mod flow_table;
pub mod listener;
pub mod own_addresses;
pub mod send;
pub mod socket;
