//! Moving clients' bytes: listening sockets, accept loops, sessions and the relay.
//!
//! `listener` creates sockets, `tcp` accepts and runs sessions (on the worker
//! `dispatch` chooses), `relay` copies bytes
//! (through `splice` pipes for bulk transfers) until the session ends or
//! `session_stop` closes it. `backend_socket` makes backend
//! sockets from a service's `source` and `mark`; `source_check` tries those
//! settings when a configuration is started.
//! Choosing a backend belongs to `service`/`balancer`; starting and stopping the
//! accept loops belongs to `runtime`.

pub mod activity;
pub mod backend_socket;
pub mod buffer_pool;
pub mod client_hello;
pub mod dispatch;
pub mod listener;
pub mod preamble;
pub mod proxy_protocol;
pub mod relay;
pub mod session_stop;
pub mod socket_queues;
pub mod source_check;
pub mod splice;
pub mod tcp;
pub mod tls_preread;
pub mod udp;
