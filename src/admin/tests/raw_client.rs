//! A minimal raw-TCP HTTP/1.1 client for exercising the admin server over real
//! sockets. Understands only what the admin server sends: a status line,
//! headers and a `Content-Length` body. Not a general HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single client step, so a broken server fails a test
/// instead of hanging it.
pub(super) const STEP_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct RawResponse {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl RawResponse {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("response body is UTF-8")
    }
}

pub(super) async fn connect(addr: SocketAddr) -> TcpStream {
    bounded(TcpStream::connect(addr))
        .await
        .expect("connect to admin server")
}

/// Sends `request` verbatim; write errors are returned so callers can accept
/// a server that hangs up early.
pub(super) async fn send(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<()> {
    bounded(stream.write_all(request)).await
}

/// A request head with no body that keeps the connection open.
pub(super) fn keep_alive_request(method: &str, target: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: admin\r\n\r\n")
}

/// One request on a fresh connection that the server closes afterwards.
pub(super) async fn request(addr: SocketAddr, method: &str, target: &str) -> RawResponse {
    try_request(addr, method, target)
        .await
        .expect("admin server closed the connection without a response")
}

/// Like [`request`], but `None` if the server closes the connection before
/// sending any response bytes.
pub(super) async fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
) -> Option<RawResponse> {
    let mut stream = connect(addr).await;
    let request = format!("{method} {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    send(&mut stream, request.as_bytes()).await.ok()?;
    let first = try_read_chunk(&mut stream)
        .await
        .filter(|chunk| !chunk.is_empty())?;
    Some(read_response_after(&mut stream, first, method != "HEAD").await)
}

/// Sends `raw` (a whole request, verbatim) on a fresh connection and reads
/// one response.
pub(super) async fn exchange(addr: SocketAddr, raw: &str) -> RawResponse {
    let mut stream = connect(addr).await;
    send(&mut stream, raw.as_bytes()).await.expect("send");
    read_response(&mut stream, true).await
}

/// A client that asks for `target` and reads only the first bytes of the
/// answer (its receive buffer kept small), so the rest of a large response
/// stays in flight on the server.
pub(super) async fn stalled_reader(addr: SocketAddr, target: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = bounded(socket.connect(addr))
        .await
        .expect("connect to admin server");
    let request = keep_alive_request("GET", target);
    send(&mut stream, request.as_bytes()).await.expect("send");
    let mut status_line = [0u8; 12];
    bounded(stream.read_exact(&mut status_line))
        .await
        .expect("the response starts");
    assert_eq!(&status_line, b"HTTP/1.1 200");
    stream
}

/// Reads one response. With `has_body` false (HEAD) no body bytes are read,
/// whatever `Content-Length` says.
pub(super) async fn read_response(stream: &mut TcpStream, has_body: bool) -> RawResponse {
    read_response_after(stream, Vec::new(), has_body).await
}

/// Reads the rest of a response of which `received` holds the first bytes.
async fn read_response_after(
    stream: &mut TcpStream,
    received: Vec<u8>,
    has_body: bool,
) -> RawResponse {
    let (head, mut body) = read_head(stream, received).await;
    let mut response = parse_head(&head);
    let length = match response.header("content-length") {
        Some(value) if has_body => value.parse::<usize>().expect("numeric content-length"),
        _ => 0,
    };
    while body.len() < length {
        let chunk = read_chunk(stream).await;
        assert!(!chunk.is_empty(), "connection closed mid-body");
        body.extend_from_slice(&chunk);
    }
    assert_eq!(
        body.len(),
        length,
        "unexpected bytes after the response body"
    );
    response.body = body;
    response
}

/// Everything the server sends until it closes the connection (EOF or reset).
/// Panics if the server keeps the connection open past [`STEP_BOUND`].
pub(super) async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    while let Some(chunk) = try_read_chunk(stream).await {
        if chunk.is_empty() {
            break;
        }
        received.extend_from_slice(&chunk);
    }
    received
}

async fn read_head(stream: &mut TcpStream, mut received: Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8(received[..end].to_vec()).expect("UTF-8 head");
            return (head, received[end + 4..].to_vec());
        }
        let chunk = read_chunk(stream).await;
        assert!(
            !chunk.is_empty(),
            "connection closed before a response head"
        );
        received.extend_from_slice(&chunk);
    }
}

fn parse_head(head: &str) -> RawResponse {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: Vec::new(),
    }
}

async fn read_chunk(stream: &mut TcpStream) -> Vec<u8> {
    try_read_chunk(stream)
        .await
        .expect("read from admin server failed")
}

/// The next bytes from the server: empty at EOF, `None` on a read error.
async fn try_read_chunk(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 16 * 1024];
    let read = bounded(stream.read(&mut buf)).await.ok()?;
    buf.truncate(read);
    Some(buf)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn bounded<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_BOUND, step)
        .await
        .expect("admin server did not answer within the test bound")
}
