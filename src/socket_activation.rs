//! systemd socket activation: listening sockets handed to l4lb at start as file
//! descriptors 3, 4, … described by `LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES` (the protocol of `sd_listen_fds(3)`), by a `.socket` unit or
//! by systemd's file-descriptor store on a restart.
//!
//! A passed socket is matched to the configuration by what it is — its protocol
//! and the address it is bound to, read back from the kernel — never by its
//! name, so the socket unit and `lb.toml` cannot disagree silently about which
//! socket serves which service. Names are only shown in logs.
//!
//! The variables are read, not removed: removing them is unsound once threads
//! exist, and nothing needs it — `LISTEN_PID` names this process, so a process
//! l4lb starts ignores them, and every taken descriptor is made close-on-exec.
//! Hand-written rather than taken from a crate: the protocol is three variables
//! and a loop, and the checks that matter here (a TCP socket must be listening,
//! an address must be IPv4 or IPv6) are l4lb's own.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use socket2::{SockRef, Type};

use crate::config::Protocol;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// More than any unit passes; a larger count is a corrupt environment.
const MAX_FDS: usize = 4096;

/// One socket systemd passed in, checked and owned.
#[derive(Debug)]
pub struct ActivatedSocket {
    pub fd: OwnedFd,
    pub protocol: Protocol,
    /// The address the socket is bound to, as the kernel reports it.
    pub local: SocketAddr,
    /// Its name in `LISTEN_FDNAMES` (`FileDescriptorName=`, or systemd's default).
    pub name: String,
}

/// Why the passed sockets cannot be used; `l4lb run` stops with it before
/// binding anything.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a number of descriptors (at most {MAX_FDS})")]
    BadCount(String),
    #[error("LISTEN_FDNAMES names {names} descriptors but LISTEN_FDS is {fds}")]
    NameCount { names: usize, fds: usize },
    #[error("passed descriptor {fd} ({name}): {reason}")]
    Descriptor {
        fd: RawFd,
        name: String,
        reason: String,
    },
}

/// What the environment says was passed: how many descriptors, and their names.
#[derive(Debug, PartialEq, Eq)]
struct Passed {
    names: Vec<String>,
}

/// The sockets passed to this process, or none when the environment passes
/// nothing to it (no `LISTEN_FDS`, or `LISTEN_PID` names another process).
pub fn from_env() -> Result<Vec<ActivatedSocket>, ActivationError> {
    let var = |name: &str| std::env::var(name).ok();
    let passed = parse(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    let Some(passed) = passed else {
        return Ok(Vec::new());
    };
    let mut sockets = Vec::with_capacity(passed.names.len());
    for (fd, name) in (FIRST_FD..).zip(passed.names) {
        sockets.push(take(fd, name)?);
    }
    Ok(sockets)
}

/// The pure half of [`from_env`]: the variables' values (`None` when unset) for
/// the process `own_pid`.
fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Passed>, ActivationError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| ActivationError::BadCount(fds.to_string()))?;
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<String> = match names {
        Some(names) => names.split(':').map(String::from).collect(),
        None => vec![String::from("unknown"); count],
    };
    if names.len() != count {
        return Err(ActivationError::NameCount {
            names: names.len(),
            fds: count,
        });
    }
    Ok(Some(Passed { names }))
}

/// Takes ownership of descriptor `fd` after checking it is an IPv4/IPv6 socket
/// l4lb can serve: a listening TCP socket or a UDP socket.
fn take(fd: RawFd, name: String) -> Result<ActivatedSocket, ActivationError> {
    let fail = |reason: String| ActivationError::Descriptor {
        fd,
        name: name.clone(),
        reason,
    };
    // SAFETY: F_GETFD only reads the descriptor's flags; an fd that is not open
    // fails with EBADF and is never used.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(fail(format!(
            "not open: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: systemd passes descriptors FIRST_FD.. to this process for it to own
    // (LISTEN_PID names it); the descriptor is open (checked above), and nothing
    // else in l4lb takes descriptors from this range.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (protocol, local) = inspect(owned.as_fd()).map_err(fail)?;
    set_close_on_exec(owned.as_fd()).map_err(|e| fail(e.to_string()))?;
    Ok(ActivatedSocket {
        fd: owned,
        protocol,
        local,
        name,
    })
}

/// The protocol and bound address of `fd`, or why l4lb cannot serve it.
pub fn inspect(fd: BorrowedFd<'_>) -> Result<(Protocol, SocketAddr), String> {
    let socket = SockRef::from(&fd);
    let kind = socket.r#type().map_err(|e| format!("not a socket: {e}"))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("cannot read its address: {e}"))?
        .as_socket()
        .ok_or("not an IPv4 or IPv6 socket")?;
    if kind == Type::STREAM {
        let listening = socket
            .is_listener()
            .map_err(|e| format!("cannot tell whether it listens: {e}"))?;
        if !listening {
            return Err(format!(
                "TCP socket on {local} is not listening (a socket unit with Accept=yes is not supported)"
            ));
        }
        Ok((Protocol::Tcp, local))
    } else if kind == Type::DGRAM {
        Ok((Protocol::Udp, local))
    } else {
        Err(format!("socket on {local} is neither TCP nor UDP"))
    }
}

fn set_close_on_exec(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    SockRef::from(&fd).set_cloexec(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn nothing_is_passed_without_both_variables_or_to_another_process() {
        assert_eq!(parse(None, None, None, 7), Ok(None));
        assert_eq!(parse(Some("7"), None, None, 7), Ok(None));
        assert_eq!(parse(None, Some("2"), None, 7), Ok(None));
        assert_eq!(parse(Some("8"), Some("2"), None, 7), Ok(None));
        assert_eq!(parse(Some("x"), Some("2"), None, 7), Ok(None));
        assert_eq!(parse(Some("7"), Some("0"), None, 7), Ok(None));
    }

    #[test]
    fn names_pair_with_descriptors_in_order() {
        let passed = parse(Some("7"), Some("3"), Some("pg:dns:stored"), 7).unwrap();
        assert_eq!(
            passed.unwrap().names,
            vec!["pg".to_string(), "dns".into(), "stored".into()]
        );
        let unnamed = parse(Some("7"), Some("2"), None, 7).unwrap().unwrap();
        assert_eq!(unnamed.names, vec!["unknown".to_string(), "unknown".into()]);
    }

    #[test]
    fn a_corrupt_environment_is_an_error_naming_the_variable() {
        let bad = parse(Some("7"), Some("many"), None, 7).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "LISTEN_FDS=\"many\" is not a number of descriptors (at most 4096)"
        );
        assert!(parse(Some("7"), Some("100000"), None, 7).is_err());
        let names = parse(Some("7"), Some("2"), Some("a:b:c"), 7).unwrap_err();
        assert_eq!(
            names.to_string(),
            "LISTEN_FDNAMES names 3 descriptors but LISTEN_FDS is 2"
        );
    }

    #[test]
    fn listening_tcp_and_bound_udp_sockets_are_recognised() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            inspect(tcp.as_fd()),
            Ok((Protocol::Tcp, tcp.local_addr().unwrap()))
        );
        assert_eq!(
            inspect(udp.as_fd()),
            Ok((Protocol::Udp, udp.local_addr().unwrap()))
        );
    }

    #[test]
    fn sockets_l4lb_cannot_serve_are_refused_with_the_reason() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let refused = inspect(connected.as_fd()).unwrap_err();
        assert!(refused.contains("is not listening"), "{refused}");

        let (unix, _peer) = UnixDatagram::pair().unwrap();
        let refused = inspect(unix.as_fd()).unwrap_err();
        assert!(refused.contains("not an IPv4 or IPv6 socket"), "{refused}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let refused = inspect(file.as_fd()).unwrap_err();
        assert!(refused.starts_with("not a socket"), "{refused}");
    }
}
