//! Loopback ports for tests that must write a port into a configuration before
//! anything binds it.
//!
//! Binding port 0 and releasing it hands out a port from the kernel's ephemeral
//! range, which every outgoing connection of every test running in parallel also
//! draws from: by the time l4lb binds it, the port may be some client's source
//! port, and a "wait until it accepts" loop may even connect to itself there
//! (TCP simultaneous open). So these ports come from the 12,000 just below the
//! ephemeral range (read from `/proc/sys/net/ipv4/ip_local_port_range`), which
//! only tests that named them use. Each test process starts at its own random
//! point, never hands out a port twice, and checks that the port is free for
//! both TCP and UDP on 127.0.0.1 before handing it out.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// How many ports below the ephemeral range are drawn from.
const SPAN: u16 = 12_000;

/// The next candidate offset into the span, once chosen at random.
static NEXT: Mutex<Option<u16>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing uses for TCP or UDP right now and that the
/// kernel does not give to outgoing connections.
pub fn free_port() -> u16 {
    let low = ephemeral_low().saturating_sub(SPAN).max(1024);
    let mut next = NEXT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut offset = next.unwrap_or_else(|| fastrand::u16(..SPAN));
    for _ in 0..SPAN {
        let port = low + offset;
        offset = (offset + 1) % SPAN;
        if is_free(port) {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + SPAN);
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first port of the kernel's ephemeral range (32768 when unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
