//! Many concurrent bulk streams through one worker: more than the splice pipe
//! pool holds, so most of them take the copy path at once.
//!
//! Kept in a file of its own: the pipe pool is process-wide, and this test
//! needs every pipe taken by its own streams.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestProxy, random_bytes};
use l4lb::proxy::splice::{MAX_PIPES, PooledPipe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Per client: enough full 64 KiB reads to spend a task's whole cooperative
/// budget many times over.
const UPLOAD: usize = 8 * 1024 * 1024;

/// For the whole transfer (about 600 MiB through a debug build).
const TRANSFER_PATIENCE: Duration = Duration::from_secs(60);

/// A backend that reads each connection to its end as fast as it can, into
/// one reused buffer, then answers "got N bytes".
async fn counting_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0usize;
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => total += n,
                        Err(_) => return,
                    }
                }
                let _ = stream
                    .write_all(format!("got {total} bytes").as_bytes())
                    .await;
            });
        }
    });
    addr
}

/// Uploads `UPLOAD` bytes as fast as the proxy takes them, half-closes, and
/// returns the backend's answer ("NAME got N bytes").
async fn upload(addr: SocketAddr, seed: u64) -> String {
    let data = random_bytes(UPLOAD, seed);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&data).await.expect("upload");
    stream.shutdown().await.expect("half-close");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("reply");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_bulk_uploads_than_pipes_all_finish_on_one_worker() {
    let sink = counting_sink().await;
    let toml = format!(
        "[global]\nworkers = 1\n[[service]]\nname = \"bulk\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{sink}\"\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("bulk");

    // Streams beyond the pipe pool copy through buffers. Take every pipe the
    // pool would lend first, so that every stream here copies (as the 65th
    // of 65 streams would, whatever the timing).
    let held: Vec<PooledPipe> = std::iter::from_fn(PooledPipe::take)
        .take(MAX_PIPES)
        .collect();
    assert!(PooledPipe::take().is_none(), "the pipe pool is exhausted");
    let clients = MAX_PIPES + 16;
    let uploads: Vec<_> = (0..clients as u64)
        .map(|seed| tokio::spawn(upload(addr, seed)))
        .collect();
    let all = async {
        for upload in uploads {
            let reply = upload.await.expect("upload task");
            assert_eq!(reply, format!("got {UPLOAD} bytes"));
        }
    };
    tokio::time::timeout(TRANSFER_PATIENCE, all)
        .await
        .expect("every upload finishes: the worker keeps serving");
    drop(held);
    proxy.assert_drained().await;
    assert!(proxy.stop().await.completed);
}
