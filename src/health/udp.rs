//! `kind = "udp"`: a datagram with the configured payload is sent from a
//! connected socket and any datagram back within the timeout is a success; an
//! ICMP port-unreachable, reported as ECONNREFUSED on a connected socket, fails
//! at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::probe::{Failed, Passed, Probe};
use crate::config::UdpCheck;

impl Probe for UdpCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        udp_exchange(target, &self.send)
            .await
            .map(|()| Passed::default())
            .map_err(|e| format!("udp: {e}"))
    }
}

async fn udp_exchange(target: SocketAddr, payload: &[u8]) -> io::Result<()> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(payload).await?;
    let mut reply = [0u8; 512];
    socket.recv(&mut reply).await.map(drop)
}
