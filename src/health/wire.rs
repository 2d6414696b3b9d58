//! Small, bounded reads shared by the probes: a probe never buffers more than
//! it needs to judge the answer, whatever a backend sends.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads until `len` bytes have come or the peer closes; at most `len` bytes.
pub async fn read_up_to(stream: &mut (impl AsyncRead + Unpin), len: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len.min(4096));
    let mut chunk = [0u8; 1024];
    while data.len() < len {
        let want = (len - data.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    Ok(data)
}

/// Reads one line (without its `\n` or `\r\n`), at most `max` bytes; the end
/// of the stream also ends the line.
pub async fn read_line(stream: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < max {
        if stream.read(&mut byte).await? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// `bytes` as printable text, e.g. `-ERR nope` or `\x00\x01`, cut after 120 bytes.
pub fn printable(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(120)];
    let mut text = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        text.push_str("...");
    }
    text
}
