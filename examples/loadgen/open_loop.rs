//! `tcp-pingpong --rate R`: open-loop request/response at a fixed rate.
//!
//! Closed-loop clients send the next request only once the previous reply is
//! in, so a proxy that stalls for 10 ms simply receives fewer requests in those
//! 10 ms, and the stall hides in one slow sample ("coordinated omission"). Here,
//! as in wrk2, every request has an intended send time on a fixed schedule
//! (`connections / R` apart on each connection, the connections staggered), and
//! its latency is measured from that intended time: a stall delays every
//! request scheduled during it, and each of them counts.
//!
//! Each connection runs on its own thread with blocking sockets, and the
//! threads' timer slack is set to 1 ns, so a request leaves within a few
//! microseconds of its intended time (tokio's millisecond timer wheel would add
//! up to a millisecond of error to every sample).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU64;
use std::thread;
use std::time::{Duration, Instant};

use super::{Histogram, TCP_OP_TIMEOUT};

/// What one open-loop run measured.
pub struct OpenLoopStats {
    pub hist: Histogram,
    pub errors: u64,
    /// Requests whose send time had already passed when the connection was
    /// free to send them (the target was slower than the schedule).
    pub behind: u64,
}

/// Runs `connections` connections to `target` for `run_for`, sending `rate`
/// requests of `size` bytes per second in total.
pub fn run(
    target: SocketAddr,
    connections: u32,
    rate: f64,
    size: usize,
    run_for: Duration,
) -> Result<OpenLoopStats, String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
        return Err(format!(
            "--rate must be in (0, 10000000] requests/s, got {rate}"
        ));
    }
    let interval = Duration::from_secs_f64(f64::from(connections) / rate);
    let mut streams = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        streams.push(open(target).map_err(|e| format!("connect {target}: {e}"))?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + run_for;
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let first = start + interval.mul_f64(i as f64 / f64::from(connections));
            thread::spawn(move || connection(stream, size, first, interval, deadline))
        })
        .collect();
    let mut all = OpenLoopStats {
        hist: Histogram::new(),
        errors: 0,
        behind: 0,
    };
    for t in threads {
        let s = t
            .join()
            .map_err(|_| "an open-loop thread panicked".to_string())?;
        all.hist.merge(&s.hist);
        all.errors += s.errors;
        all.behind += s.behind;
    }
    Ok(all)
}

fn open(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(target)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TCP_OP_TIMEOUT))?;
    stream.set_write_timeout(Some(TCP_OP_TIMEOUT))?;
    Ok(stream)
}

/// One connection's schedule: send at `first`, `first + interval`, … until
/// `deadline`; each latency runs from the intended send time to the reply.
fn connection(
    mut stream: TcpStream,
    size: usize,
    first: Instant,
    interval: Duration,
    deadline: Instant,
) -> OpenLoopStats {
    set_fine_timer_slack();
    let mut stats = OpenLoopStats {
        hist: Histogram::new(),
        errors: 0,
        behind: 0,
    };
    let mut out = vec![0u8; size];
    let mut back = vec![0u8; size];
    let mut intended = first;
    let mut seq: u8 = 0;
    while intended < deadline {
        let now = Instant::now();
        match intended.checked_duration_since(now) {
            Some(wait) => thread::sleep(wait),
            None => stats.behind += 1,
        }
        seq = seq.wrapping_add(1);
        out.fill(seq);
        let exchanged = stream
            .write_all(&out)
            .and_then(|()| stream.read_exact(&mut back));
        match exchanged {
            Ok(()) if back == out => stats.hist.record(intended.elapsed()),
            Ok(()) => stats.errors += 1,
            Err(_) => {
                stats.errors += 1;
                return stats;
            }
        }
        intended += interval;
    }
    stats
}

/// Asks the kernel to wake this thread's sleeps on time (the default slack
/// of 50 µs would shift every send by up to that much). Best effort.
fn set_fine_timer_slack() {
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
}
