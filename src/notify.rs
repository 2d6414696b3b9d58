//! systemd service notification (`sd_notify`), spoken directly: the protocol is one
//! datagram of newline-separated `KEY=value` assignments sent to the `AF_UNIX` socket
//! named by `NOTIFY_SOCKET` (a path, or a Linux abstract name when it starts with '@').
//!
//! What l4lb sends (SPEC section 5): `READY=1` once every listener is bound;
//! `RELOADING=1` with `MONOTONIC_USEC=` when a reload starts and `READY=1` when it is
//! done; `STOPPING=1` on shutdown; `STATUS=` with a one-line summary; and `WATCHDOG=1`
//! every `WATCHDOG_USEC / 2` when systemd asked this process for watchdog pings.
//!
//! Notification is best effort and must never hurt the proxy: without `NOTIFY_SOCKET`
//! every call is a no-op, sends are non-blocking, and a failed send is logged once at
//! warn level (later failures at debug level) and otherwise ignored.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Floor for the watchdog ping interval, so a tiny `WATCHDOG_USEC` cannot make
/// [`run_watchdog`] spin.
const MIN_WATCHDOG_INTERVAL: Duration = Duration::from_millis(1);

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket in the file system.
    Path(PathBuf),
    /// A Linux abstract socket: the name after the '@' (the kernel's leading NUL is implied).
    Abstract(Vec<u8>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(path) => write!(f, "{}", path.display()),
            Target::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Sends service state notifications to systemd; a no-op when not run under a
/// `Type=notify` service.
#[derive(Debug)]
pub struct Notifier {
    /// `None`: notification is disabled and every call does nothing.
    target: Option<Target>,
    /// Watchdog ping interval, when systemd asked this process for pings.
    watchdog: Option<Duration>,
    /// Set after the first failed send has been logged at warn level.
    warned: AtomicBool,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET (path, or abstract socket when it starts with '@'); a no-op notifier when unset.
    ///
    /// Also reads `WATCHDOG_USEC` and `WATCHDOG_PID` for [`Notifier::watchdog_interval`].
    /// Values that are not valid UTF-8 count as unset.
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var(name).ok();
        from_vars(
            var("NOTIFY_SOCKET"),
            var("WATCHDOG_USEC"),
            var("WATCHDOG_PID"),
            std::process::id(),
        )
    }

    /// For tests: a notifier that writes to `path`.
    pub fn to_path(path: impl Into<PathBuf>) -> Notifier {
        Notifier::new(Some(Target::Path(path.into())), None)
    }

    fn new(target: Option<Target>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            target,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether notifications are sent anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Every listener is bound (or a reload is done): `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&with_status("READY=1\n", status));
    }

    /// Ready after taking over from a predecessor: `MAINPID=` (this process is
    /// the service's main process from now on), `READY=1` and a status line.
    pub fn ready_as_main(&self, status: &str) {
        let head = format!("MAINPID={}\nREADY=1\n", std::process::id());
        self.send(&with_status(&head, status));
    }

    /// A reload starts: `RELOADING=1`, the `CLOCK_MONOTONIC` time as `MONOTONIC_USEC`
    /// (systemd uses it to match the notification to its reload request), and a status line.
    pub fn reloading(&self, status: &str) {
        let head = match monotonic_usec() {
            Some(usec) => format!("RELOADING=1\nMONOTONIC_USEC={usec}\n"),
            None => String::from("RELOADING=1\n"),
        };
        self.send(&with_status(&head, status));
    }

    /// Shutdown has begun: `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&with_status("STOPPING=1\n", status));
    }

    /// A new status line only (shown by `systemctl status`).
    pub fn status(&self, status: &str) {
        self.send(&with_status("", status));
    }

    /// The watchdog ping interval (half of WATCHDOG_USEC) when systemd asked for pings for this process.
    ///
    /// `None` when notification is disabled, `WATCHDOG_USEC` is unset, zero, infinite or
    /// not a number, or `WATCHDOG_PID` names another process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// One watchdog ping: `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Sends `message` with `fds` attached (SCM_RIGHTS), as the file-descriptor
    /// store needs; unlike the other notifications the outcome is returned, since
    /// a descriptor systemd did not take is one a restart will not give back.
    /// `Ok(false)` when notification is disabled.
    pub fn send_with_fds(&self, message: &str, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        send_datagram_with_fds(target, message.as_bytes(), fds)?;
        Ok(true)
    }

    /// Sends `message` as one datagram; failures are logged, never returned.
    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let Err(error) = send_datagram(target, message.as_bytes()) else {
            return;
        };
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, socket = %target, "sd_notify send failed");
        } else {
            tracing::warn!(%error, socket = %target,
                "sd_notify send failed; further notification errors are logged at debug level");
        }
    }
}

/// Sends WATCHDOG=1 every `watchdog_interval()` until `stop` is cancelled (tokio task body); returns at once when no watchdog is configured.
///
/// The first ping goes out at once. A ping is withheld while `healthy` says
/// no (a worker thread has stopped running its loop), so that systemd's
/// `WatchdogSec=` restarts a process that cannot serve.
pub async fn run_watchdog(
    notifier: Arc<Notifier>,
    stop: CancellationToken,
    healthy: impl Fn() -> bool,
) {
    let Some(interval) = notifier.watchdog_interval() else {
        return;
    };
    while !stop.is_cancelled() {
        if healthy() {
            notifier.watchdog();
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The notifier described by the environment values `NOTIFY_SOCKET`, `WATCHDOG_USEC`
/// and `WATCHDOG_PID` (as read, `None` when unset) for the process `own_pid`.
///
/// `NOTIFY_SOCKET` must be an absolute path or `@name`; anything else (empty, relative,
/// a bare '@', another address family such as `vsock:`) disables notification. The
/// watchdog is only enabled together with a notify socket.
fn from_vars(
    notify_socket: Option<String>,
    watchdog_usec: Option<String>,
    watchdog_pid: Option<String>,
    own_pid: u32,
) -> Notifier {
    let target = notify_socket.as_deref().and_then(parse_socket);
    let watchdog = target
        .as_ref()
        .and_then(|_| parse_watchdog(watchdog_usec.as_deref(), watchdog_pid.as_deref(), own_pid));
    Notifier::new(target, watchdog)
}

fn parse_socket(value: &str) -> Option<Target> {
    if let Some(name) = value.strip_prefix('@') {
        (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()))
    } else if value.starts_with('/') {
        Some(Target::Path(PathBuf::from(value)))
    } else {
        None
    }
}

/// Half of `WATCHDOG_USEC` when it is a positive, finite number of microseconds and
/// `WATCHDOG_PID`, if set, is `own_pid` (the rules of libsystemd's `sd_watchdog_enabled`).
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    if usec == 0 || usec == u64::MAX {
        return None; // u64::MAX is systemd's "infinity"
    }
    if let Some(pid) = pid
        && pid.parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    Some((Duration::from_micros(usec) / 2).max(MIN_WATCHDOG_INTERVAL))
}

/// `head` followed by `STATUS=` and `status` on one line: control characters
/// (newlines included) become spaces, since a newline would start a new assignment.
fn with_status(head: &str, status: &str) -> String {
    let mut message = String::with_capacity(head.len() + 7 + status.len());
    message.push_str(head);
    message.push_str("STATUS=");
    message.extend(status.chars().map(|c| if c.is_control() { ' ' } else { c }));
    message
}

/// One datagram from a fresh unbound socket; non-blocking, so a full receive queue
/// is an error rather than a stall.
fn send_datagram(target: &Target, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let sent = match target {
        Target::Path(path) => socket.send_to(message, path)?,
        Target::Abstract(name) => {
            socket.send_to_addr(message, &SocketAddr::from_abstract_name(name)?)?
        }
    };
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "datagram truncated",
        ));
    }
    Ok(())
}

/// One datagram carrying `fds` as SCM_RIGHTS; non-blocking like [`send_datagram`].
fn send_datagram_with_fds(
    target: &Target,
    message: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use rustix::net::{
        SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, sendmsg_addr,
    };
    let socket = UnixDatagram::unbound()?;
    let address = match target {
        Target::Path(path) => SocketAddrUnix::new(path.as_path()),
        Target::Abstract(name) => SocketAddrUnix::new_abstract_name(name),
    }?;
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "descriptors do not fit the control buffer",
        ));
    }
    let payload = [io::IoSlice::new(message)];
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let sent = sendmsg_addr(&socket, &address, &payload, &mut control, flags)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "datagram truncated",
        ));
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's `MONOTONIC_USEC` refers to;
/// `None` if the clock cannot be read (not expected on Linux).
fn monotonic_usec() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, exclusively borrowed `timespec` for the whole call;
    // clock_gettime only writes the current time into it and keeps no pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let micros = u64::try_from(now.tv_nsec).ok()? / 1_000;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::AtomicU32;

    static NEXT_ID: AtomicU32 = AtomicU32::new(0);

    fn unique(tag: &str) -> String {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        format!("l4lb-notify-{}-{tag}-{n}", std::process::id())
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(unique(tag));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A bound receiving socket standing in for systemd's, and its path.
    fn receiver(dir: &TempDir) -> (UnixDatagram, PathBuf) {
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (socket, path)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn assert_nothing_queued(socket: &UnixDatagram) {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let err = socket.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    fn vars(socket: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> Notifier {
        from_vars(
            socket.map(String::from),
            usec.map(String::from),
            pid.map(String::from),
            4242,
        )
    }

    #[test]
    fn each_message_is_one_exact_datagram() {
        let dir = TempDir::new("exact");
        let (socket, path) = receiver(&dir);
        let notifier = Notifier::to_path(&path);
        assert!(notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);

        notifier.ready("2 services, 5 backends");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=2 services, 5 backends");
        notifier.stopping("draining 3 sessions");
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=draining 3 sessions");
        notifier.status("serving");
        assert_eq!(recv(&socket), "STATUS=serving");
        notifier.watchdog();
        assert_eq!(recv(&socket), "WATCHDOG=1");
        assert_nothing_queued(&socket);
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let dir = TempDir::new("reload");
        let (socket, path) = receiver(&dir);
        let notifier = Notifier::to_path(&path);
        let before = monotonic_usec().unwrap();
        notifier.reloading("reloading lb.toml");
        let after = monotonic_usec().unwrap();

        let message = recv(&socket);
        let lines: Vec<&str> = message.split('\n').collect();
        assert_eq!(lines.len(), 3, "{message:?}");
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0 && before <= usec && usec <= after, "{usec}");
        assert_eq!(lines[2], "STATUS=reloading lb.toml");
    }

    #[test]
    fn status_text_is_kept_on_one_line() {
        let dir = TempDir::new("oneline");
        let (socket, path) = receiver(&dir);
        let notifier = Notifier::to_path(&path);
        notifier.status("bad config:\nline 3\r\nREADY=1");
        assert_eq!(recv(&socket), "STATUS=bad config: line 3  READY=1");
        notifier.ready("");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=");
    }

    #[test]
    fn disabled_notifier_does_nothing() {
        let notifier = vars(None, Some("1000000"), None);
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready("x");
        notifier.reloading("x");
        notifier.stopping("x");
        notifier.status("x");
        notifier.watchdog();
        assert!(!notifier.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn send_errors_are_swallowed_and_remembered() {
        let dir = TempDir::new("missing");
        let notifier = Notifier::to_path(dir.path().join("nobody-listens.sock"));
        notifier.ready("x");
        assert!(notifier.warned.load(Ordering::Relaxed));
        notifier.watchdog();
        notifier.stopping("x");
    }

    #[test]
    fn notify_socket_forms() {
        assert_eq!(vars(None, None, None).target, None);
        assert_eq!(vars(Some(""), None, None).target, None);
        assert_eq!(vars(Some("run/notify"), None, None).target, None);
        assert_eq!(vars(Some("@"), None, None).target, None);
        assert_eq!(vars(Some("vsock:2:1234"), None, None).target, None);
        assert_eq!(
            vars(Some("/run/systemd/notify"), None, None).target,
            Some(Target::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            vars(Some("@/org/freedesktop/systemd1/notify/42"), None, None).target,
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/42".to_vec()
            ))
        );
    }

    #[test]
    fn watchdog_usec_is_parsed_and_halved() {
        let sock = Some("/run/systemd/notify");
        let half = |usec, pid| vars(sock, usec, pid).watchdog_interval();
        assert_eq!(half(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(half(Some("100000"), None), Some(Duration::from_millis(50)));
        assert_eq!(
            half(Some("30000000"), Some("4242")),
            Some(Duration::from_secs(15))
        );
        assert_eq!(half(Some("1"), None), Some(MIN_WATCHDOG_INTERVAL));
        assert_eq!(half(None, None), None);
        assert_eq!(half(None, Some("4242")), None);
    }

    #[test]
    fn watchdog_for_another_pid_is_disabled() {
        let notifier = vars(Some("/run/systemd/notify"), Some("30000000"), Some("1"));
        assert!(notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn garbage_watchdog_values_are_ignored() {
        let sock = Some("/run/systemd/notify");
        for usec in [
            "",
            "abc",
            "-5",
            "1.5",
            " 100",
            "0",
            "18446744073709551615",
            "1e6",
        ] {
            let notifier = vars(sock, Some(usec), None);
            assert!(notifier.is_enabled(), "{usec:?}");
            assert_eq!(notifier.watchdog_interval(), None, "{usec:?}");
        }
        for pid in ["", "abc", "-1", "4242x"] {
            assert_eq!(
                vars(sock, Some("1000000"), Some(pid)).watchdog_interval(),
                None
            );
        }
        // A watchdog without a socket to ping is no watchdog.
        assert_eq!(
            vars(None, Some("1000000"), Some("4242")).watchdog_interval(),
            None
        );
        assert_eq!(
            vars(Some("relative"), Some("1000000"), None).watchdog_interval(),
            None
        );
    }

    #[test]
    fn abstract_socket_receives_messages() {
        let name = unique("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = vars(Some(&format!("@{name}")), None, None);
        notifier.ready("abstract");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=abstract");
        assert!(!notifier.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec().unwrap();
        assert!(a > 0 && b >= a + 1_000, "{a} {b}");
    }

    #[tokio::test]
    async fn run_watchdog_pings_until_cancelled() {
        let dir = TempDir::new("watchdog");
        let path = dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let path = path.to_str().unwrap();
        let notifier = Arc::new(vars(Some(path), Some("100000"), Some("4242")));
        assert_eq!(
            notifier.watchdog_interval(),
            Some(Duration::from_millis(50))
        );

        let stop = CancellationToken::new();
        let task = tokio::spawn(run_watchdog(notifier, stop.clone(), || true));
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let recv = socket.recv(&mut buf);
            let n = tokio::time::timeout(Duration::from_secs(5), recv)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run_watchdog stops when cancelled")
            .unwrap();
        // Nothing more once stopped: drain what was sent before the cancel, then wait.
        while socket.try_recv(&mut buf).is_ok() {}
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(socket.try_recv(&mut buf).is_err());
    }

    #[tokio::test]
    async fn run_watchdog_returns_at_once_without_a_watchdog() {
        let notifier = Arc::new(vars(Some("/run/systemd/notify"), None, None));
        let stop = CancellationToken::new();
        tokio::time::timeout(
            Duration::from_secs(1),
            run_watchdog(notifier, stop, || true),
        )
        .await
        .expect("returns without waiting for cancellation");
    }

    #[tokio::test]
    async fn run_watchdog_withholds_pings_while_unhealthy() {
        let dir = TempDir::new("watchdog-unhealthy");
        let path = dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let path = path.to_str().unwrap();
        let notifier = Arc::new(vars(Some(path), Some("100000"), Some("4242")));
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&healthy);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_watchdog(notifier, stop.clone(), move || {
            flag.load(Ordering::SeqCst)
        }));
        let mut buf = [0u8; 64];
        // Several intervals (50 ms) pass while unhealthy: not one ping.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(socket.try_recv(&mut buf).is_err());
        healthy.store(true, Ordering::SeqCst);
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        stop.cancel();
        task.await.unwrap();
    }
}
