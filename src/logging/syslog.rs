//! `--log-target syslog`: each log line becomes one RFC 3164 datagram
//! (`<PRI>Mmm dd hh:mm:ss l4lb[PID]: line`, facility `daemon`) on the local
//! syslog socket, `/dev/log` (journald and rsyslog listen there), written by
//! the `syslog` crate. `L4LB_SYSLOG_SOCKET` names another socket.
//!
//! Owns the writer `tracing-subscriber` formats into and the mapping of
//! levels to syslog severities. A line that cannot be sent (the receiver gone,
//! its queue full) is dropped: logging must never stop the proxy, so the
//! datagram socket is non-blocking.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The socket used unless `L4LB_SYSLOG_SOCKET` names another.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// The environment variable that overrides [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "L4LB_SYSLOG_SOCKET";

type Sink = Logger<LoggerBackend, Formatter3164>;

/// Sends formatted lines to syslog; cheap to share (one socket behind a lock).
#[derive(Clone)]
pub struct SyslogWriter {
    sink: Arc<Mutex<Sink>>,
}

impl SyslogWriter {
    /// Connects to the syslog socket; the error names it and says why.
    pub fn connect() -> Result<SyslogWriter, String> {
        let path = std::env::var_os(SOCKET_ENV)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: "l4lb".into(),
            pid: std::process::id(),
        };
        let sink = syslog::unix_custom(formatter, &path).map_err(|e| {
            let why = io_cause(&e);
            format!(
                "--log-target syslog: cannot send to {}: {why} (is a syslog daemon or journald \
                 listening there? {SOCKET_ENV} names another socket)",
                path.display()
            )
        })?;
        if let LoggerBackend::Unix(socket) = &sink.backend {
            socket
                .set_nonblocking(true)
                .map_err(|e| format!("--log-target syslog: {}: {e}", path.display()))?;
        }
        Ok(SyslogWriter {
            sink: Arc::new(Mutex::new(sink)),
        })
    }
}

/// The I/O error under `error` (the `syslog` crate wraps it twice, and says
/// so in its text: "Initialization error: Io error: ...").
fn io_cause(error: &syslog::Error) -> String {
    match error {
        syslog::Error::Initialization(inner) => match inner.downcast_ref::<syslog::Error>() {
            Some(inner) => io_cause(inner),
            None => inner.to_string(),
        },
        syslog::Error::Io(e) | syslog::Error::Write(e) => e.to_string(),
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> SyslogLine<'a> {
        SyslogLine::new(self, Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine<'a> {
        SyslogLine::new(self, *meta.level())
    }
}

/// One event's text, collected as it is formatted and sent when dropped.
pub struct SyslogLine<'a> {
    writer: &'a SyslogWriter,
    level: Level,
    text: Vec<u8>,
}

impl<'a> SyslogLine<'a> {
    fn new(writer: &'a SyslogWriter, level: Level) -> SyslogLine<'a> {
        SyslogLine {
            writer,
            level,
            text: Vec::new(),
        }
    }
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let line = text.trim_end();
        if line.is_empty() {
            return;
        }
        let Ok(mut sink) = self.writer.sink.lock() else {
            return;
        };
        // Dropped when it cannot be sent: see the module comment.
        let _ = match self.level {
            Level::ERROR => sink.err(line),
            Level::WARN => sink.warning(line),
            Level::INFO => sink.info(line),
            _ => sink.debug(line),
        };
    }
}
