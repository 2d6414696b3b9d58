//! A UDP relay in front of a real DNS server that counts the queries it sees
//! and can hold each answer back (a slow resolver) or drop every query (a
//! resolver that is down). The answers themselves come from the real server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct DnsRelay {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    /// Queries received but not answered yet.
    pub pending: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl DnsRelay {
    pub async fn start(upstream: SocketAddr) -> DnsRelay {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let addr = socket.local_addr().expect("relay address");
        let queries = Arc::new(AtomicUsize::new(0));
        let pending = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (q, p, d, o) = (
            Arc::clone(&queries),
            Arc::clone(&pending),
            Arc::clone(&delay_ms),
            Arc::clone(&down),
        );
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((len, client)) = socket.recv_from(&mut buf).await {
                q.fetch_add(1, Ordering::SeqCst);
                if o.load(Ordering::SeqCst) {
                    continue;
                }
                let query = buf[..len].to_vec();
                let delay = Duration::from_millis(d.load(Ordering::SeqCst));
                let (socket, pending) = (Arc::clone(&socket), Arc::clone(&p));
                pending.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Some(answer) = ask(upstream, &query).await {
                        tokio::time::sleep(delay).await;
                        let _ = socket.send_to(&answer, client).await;
                    }
                    pending.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        DnsRelay {
            addr,
            queries,
            pending,
            delay_ms,
            down,
            task,
        }
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Holds every answer back by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Drops every query (true) or answers again (false).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for DnsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ask(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut answer = vec![0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut answer))
        .await
        .ok()?
        .ok()?;
    answer.truncate(len);
    Some(answer)
}
