//! Backends that say who they saw, and clients that check it.
//!
//! The TCP backend answers every connection with `peer=<address>\n` (the
//! address of the peer the kernel reports), then echoes every byte until the
//! client's FIN. The UDP backend answers each datagram with
//! `peer=<address> <datagram>`. Both record every peer (health probes too).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lab::spawn_in;

pub const PATIENCE: Duration = Duration::from_secs(20);

/// Every peer a backend saw, in order.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<SocketAddr>>>);

impl Seen {
    pub fn all(&self) -> Vec<SocketAddr> {
        self.0.lock().expect("seen").clone()
    }

    fn push(&self, peer: SocketAddr) {
        self.0.lock().expect("seen").push(peer);
    }
}

/// A TCP echo backend at `addr` inside namespace `ns`.
pub fn tcp_backend(ns: &str, addr: SocketAddr) -> Seen {
    let seen = Seen::default();
    let listener = spawn_in(ns, move || TcpListener::bind(addr))
        .join()
        .expect("bind thread")
        .expect("bind the tcp backend");
    let record = seen.clone();
    std::thread::spawn(move || {
        for (stream, peer) in std::iter::from_fn(|| listener.accept().ok()) {
            record.push(peer);
            std::thread::spawn(move || echo(stream, peer));
        }
    });
    seen
}

fn echo(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    if stream
        .write_all(format!("peer={peer}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// A UDP backend at `addr` inside namespace `ns`.
pub fn udp_backend(ns: &str, addr: SocketAddr) -> Seen {
    let seen = Seen::default();
    let socket = spawn_in(ns, move || UdpSocket::bind(addr))
        .join()
        .expect("bind thread")
        .expect("bind the udp backend");
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            record.push(peer);
            let mut reply = format!("peer={peer} ").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, peer);
        }
    });
    seen
}

/// What one TCP client saw: its own address, the peer the backend reported,
/// and whether the echo came back byte for byte.
#[derive(Debug)]
pub struct TcpOutcome {
    pub local: SocketAddr,
    pub backend_saw: String,
    pub echoed_exactly: bool,
}

/// One session from `from` (port chosen by the kernel) to `to`: `payload` up,
/// FIN, and everything back.
pub fn tcp_session(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> TcpOutcome {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(from),
        socket2::Type::STREAM,
        None,
    )
    .expect("client socket");
    socket.bind(&from.into()).expect("bind the client address");
    socket
        .connect_timeout(&to.into(), PATIENCE)
        .expect("connect to l4lb");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let local = stream.local_addr().expect("local address");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("the backend's peer line");
    let mut writer = stream;
    writer.write_all(payload).expect("send the payload");
    writer.shutdown(Shutdown::Write).expect("FIN");
    let mut back = Vec::new();
    reader.read_to_end(&mut back).expect("read the echo");
    TcpOutcome {
        local,
        backend_saw: line.trim_end().trim_start_matches("peer=").to_string(),
        echoed_exactly: back == payload,
    }
}

/// Sends `payload` from `from` to `to` and returns the reply and the client's
/// own address; retries a lost datagram a few times.
pub fn udp_exchange(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> (Vec<u8>, SocketAddr) {
    let socket = UdpSocket::bind(from).expect("bind the client address");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        socket.send_to(payload, to).expect("send");
        if let Ok((n, sender)) = socket.recv_from(&mut buf) {
            assert_eq!(
                sender, to,
                "the reply comes from the address the client sent to"
            );
            return (buf[..n].to_vec(), socket.local_addr().expect("local"));
        }
    }
    panic!("no reply from {to} for the client at {from}");
}

/// A payload that differs per client, so a mixed-up relay shows.
pub fn payload(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
