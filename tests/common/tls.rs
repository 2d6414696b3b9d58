//! Real TLS for tests: self-signed certificates made with `openssl req`,
//! `openssl s_server` backends, `openssl s_client` / `curl` clients that report
//! which certificate they got, and a hand-built ClientHello for byte-level tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::PATIENCE;
use super::ports::free_port;
use super::servers::{ChildServer, ScratchDir, find_binary, run, wait_for_tcp};

/// `openssl`, or `None` (the test is skipped, with a note) when it is missing.
pub fn openssl() -> Option<PathBuf> {
    find_binary("openssl", &[])
}

/// A self-signed certificate for `common_name` (and it as a SAN) in `dir`;
/// returns (certificate, key).
pub fn certificate(openssl: &Path, dir: &ScratchDir, common_name: &str) -> (PathBuf, PathBuf) {
    let stem = common_name.replace('*', "star");
    let cert = dir.path().join(format!("{stem}.crt"));
    let key = dir.path().join(format!("{stem}.key"));
    run(Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
        ])
        .args(["-addext", &format!("subjectAltName=DNS:{common_name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// A running `openssl s_server -www` with its own certificate.
pub struct TlsServer {
    pub addr: SocketAddr,
    _process: ChildServer,
}

impl TlsServer {
    pub async fn start(openssl: &Path, dir: &ScratchDir, common_name: &str) -> TlsServer {
        let (cert, key) = certificate(openssl, dir, common_name);
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let process = ChildServer::spawn(
            Command::new(openssl)
                .args(["s_server", "-quiet", "-www", "-accept", &addr.to_string()])
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key),
        );
        wait_for_tcp(addr).await;
        TlsServer {
            addr,
            _process: process,
        }
    }
}

/// Runs `command` to completion (bounded by `PATIENCE`) on a blocking thread
/// and returns its output, whatever its exit status.
pub async fn output_of(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
        let mut child = child;
        let deadline = std::time::Instant::now() + PATIENCE;
        // Small outputs only (a few KB): the pipes never fill while we wait.
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{command:?} did not finish within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("wait for client")
    })
    .await
    .expect("client thread")
}

/// The subject common name of the certificate `openssl s_client` got through
/// `addr` when asking for `server_name` (`None`: send no SNI); `None` when
/// the handshake failed.
pub async fn s_client_subject(
    openssl: &Path,
    addr: SocketAddr,
    server_name: Option<&str>,
) -> Option<String> {
    let mut command = Command::new(openssl);
    command.args(["s_client", "-connect", &addr.to_string()]);
    match server_name {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let output = output_of(command).await;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("subject=CN = "))
        .map(|cn| cn.trim().to_string())
}

/// The subject curl reports for `https://NAME:PORT/` resolved to `addr`.
pub async fn curl_subject(name: &str, addr: SocketAddr) -> Option<String> {
    find_binary("curl", &[])?;
    let mut command = Command::new("curl");
    let port = addr.port();
    command
        .args(["-sk", "-v", "-o", "/dev/null", "--max-time", "10"])
        .args(["--resolve", &format!("{name}:{port}:{}", addr.ip())])
        .arg(format!("https://{name}:{port}/"));
    let output = output_of(command).await;
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find_map(|line| line.trim().strip_prefix("*  subject: CN="))
        .map(|cn| cn.trim().to_string())
}

/// A TLS 1.3-style ClientHello naming `sni`, in handshake records of at most
/// `record_size` bytes (the bytes a real client would send first).
pub fn client_hello(sni: Option<&str>, record_size: usize) -> Vec<u8> {
    padded_client_hello(sni, 0, record_size)
}

/// `client_hello` with a padding extension (RFC 7685) of `padding` zero bytes.
pub fn padded_client_hello(sni: Option<&str>, padding: usize, record_size: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        extensions.extend([0, 0]);
        extensions.extend(((name.len() + 5) as u16).to_be_bytes());
        extensions.extend(((name.len() + 3) as u16).to_be_bytes());
        extensions.push(0);
        extensions.extend((name.len() as u16).to_be_bytes());
        extensions.extend(name);
    }
    extensions.extend([0, 43, 0, 3, 2, 3, 4]);
    if padding > 0 {
        extensions.extend([0, 21]);
        extensions.extend((padding as u16).to_be_bytes());
        extensions.extend(vec![0u8; padding]);
    }
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut message = vec![1];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    message
        .chunks(record_size)
        .flat_map(|chunk| {
            let mut record = vec![22, 3, 1];
            record.extend((chunk.len() as u16).to_be_bytes());
            record.extend(chunk);
            record
        })
        .collect()
}

/// A pause between dribbled bytes, so that each goes out in its own segment.
pub const DRIBBLE_PAUSE: Duration = Duration::from_millis(2);
