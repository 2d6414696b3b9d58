//! Slow readers and the idle timeout: a client that reads slowly but steadily
//! is busy, not idle, and a session cut while bytes are still on their way is
//! reset, never ended with a FIN that makes a truncated stream look complete.
//!
//! Kept in a file of its own so the bulk burst can take a splice pipe (the
//! pool is process-wide): a whole pipe draining into a slow reader takes longer
//! than the idle timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PATIENCE, TestProxy, random_bytes};
use sha2::{Digest, Sha256};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that sends `data` to each client as fast as it is taken, then
/// closes (`close_after = true`) or keeps the connection open and silent.
async fn streaming_backend(data: Vec<u8>, close_after: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                if stream.write_all(&data).await.is_err() {
                    return;
                }
                if close_after {
                    let _ = stream.shutdown().await;
                } else {
                    tokio::time::sleep(PATIENCE).await;
                }
            });
        }
    });
    addr
}

/// A client socket with a small receive buffer, so the proxy's writes wait
/// on the reader instead of filling a large kernel buffer.
async fn small_window_client(to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
    socket.set_nonblocking(true).expect("nonblocking");
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(to).await.expect("connect")
}

fn service(backend: SocketAddr, idle: &str) -> String {
    format!(
        "[[service]]\nname = \"stream\"\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"{idle}\"\n\
         [[service.backend]]\naddress = \"{backend}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_reader_gets_the_whole_stream_past_the_idle_timeout() {
    let data = random_bytes(6 * 1024 * 1024, 7);
    let expected: [u8; 32] = Sha256::digest(&data).into();
    let backend = streaming_backend(data.clone(), true).await;
    let proxy = TestProxy::start(&service(backend, "400ms")).await;
    let mut client = small_window_client(proxy.addr("stream")).await;

    // About 1.2 MB/s, never pausing longer than 10 ms: once the kernel's
    // buffers are full, a whole splice pipe (1 MiB) takes over twice the idle
    // timeout to drain into this reader.
    let mut received = Vec::with_capacity(data.len());
    let mut chunk = vec![0u8; 12 * 1024];
    let read_all = async {
        loop {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            received.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("stream ends in time")
        .expect("stream ends cleanly");
    assert_eq!(received.len(), data.len(), "every byte arrives");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&received)), expected);
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_the_idle_timeout_with_bytes_pending_is_reset() {
    // More than every kernel buffer on the way holds: the proxy is left
    // holding bytes it cannot pass on.
    let sent = 64 * 1024 * 1024;
    let backend = streaming_backend(vec![b'x'; sent], false).await;
    let proxy = TestProxy::start(&service(backend, "300ms")).await;
    let mut client = small_window_client(proxy.addr("stream")).await;

    // Read nothing: the proxy's writes stall, nothing moves, and the idle
    // timeout cuts the session while megabytes are still on their way.
    let service = proxy.current("stream");
    common::wait_until("the session starts", || service.active_connections() == 1).await;
    common::wait_until("the session is cut", || service.active_connections() == 0).await;
    let mut sink = Vec::new();
    let end = tokio::time::timeout(PATIENCE, client.read_to_end(&mut sink))
        .await
        .expect("the client learns the end in time");
    let error = end.expect_err("a cut stream must not end with a clean FIN");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(sink.len() < sent);
    proxy.assert_drained().await;
}
