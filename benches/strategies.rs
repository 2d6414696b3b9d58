//! Cost of one pick for every strategy with 3, 32 and 1000 backends (all eligible),
//! and of building a maglev table for 100 and 1000 backends.
//!
//! `pick` runs on idle backends with no connect time measured yet. `pick_loaded`
//! repeats the load-aware strategies on backends that each hold 1 to 8
//! connections and have a measured connect time, as on a busy balancer: no
//! backend is idle there, so nothing lets a scan stop early.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::time::Duration;

use l4lb::backend::{Backend, ConnectionGuard};
use l4lb::balancer::{PickContext, build};
use l4lb::config::{HashKey, StrategyConfig, StrategyKind};

const BACKEND_COUNTS: [usize; 3] = [3, 32, 1000];

fn backends(count: usize) -> Vec<Arc<Backend>> {
    (0..count)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0A00_0000 + i as u32 + 1);
            let addr = SocketAddr::from((ip, 80));
            let weight = 1 + (i as u32 % 4);
            Arc::new(Backend::new(addr.to_string(), addr, weight))
        })
        .collect()
}

fn config(kind: StrategyKind) -> StrategyConfig {
    StrategyConfig {
        kind,
        hash_key: HashKey::SourceIpPort,
        ..StrategyConfig::default()
    }
}

/// A different client and random number for every pick.
fn next_context(counter: &mut u64) -> PickContext {
    *counter = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let ip = Ipv4Addr::from((*counter >> 32) as u32);
    PickContext {
        client: SocketAddr::from((ip, *counter as u16)),
        random: *counter,
        server_name: None,
    }
}

fn bench_picks(c: &mut Criterion) {
    bench_pick_groups(c, "pick", &StrategyKind::ALL, false);
}

/// One criterion group per strategy in `kinds`, named `prefix/kind`, with one
/// bench per backend count; `loaded` gives the backends connections first.
fn bench_pick_groups(c: &mut Criterion, prefix: &str, kinds: &[StrategyKind], loaded: bool) {
    for &kind in kinds {
        let mut group = c.benchmark_group(format!("{prefix}/{kind}"));
        for count in BACKEND_COUNTS {
            let backends = backends(count);
            let _guards = if loaded { load(&backends) } else { Vec::new() };
            let strategy = build(&config(kind), &backends);
            let mut counter = 0u64;
            group.bench_function(BenchmarkId::from_parameter(count), |b| {
                b.iter(|| {
                    let ctx = next_context(&mut counter);
                    black_box(strategy.pick(black_box(&backends), &ctx, &|_| true))
                })
            });
        }
        group.finish();
    }
}

/// Gives every backend 1 to 8 open connections and a measured connect time of
/// 1 to 20 ms; the guards keep the connections open.
fn load(backends: &[Arc<Backend>]) -> Vec<ConnectionGuard> {
    let mut guards = Vec::new();
    for (i, backend) in backends.iter().enumerate() {
        let millis = 1 + (i as u64 * 7) % 20;
        backend.record_connect_success(Duration::from_millis(millis));
        for _ in 0..1 + (i * 5) % 8 {
            guards.extend(backend.try_acquire());
        }
    }
    guards
}

fn bench_loaded_picks(c: &mut Criterion) {
    let kinds = [
        StrategyKind::LeastConnections,
        StrategyKind::PowerOfTwo,
        StrategyKind::LeastResponseTime,
    ];
    bench_pick_groups(c, "pick_loaded", &kinds, true);
}

fn bench_maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build/maglev_65537");
    group.sample_size(10);
    for count in [100, 1000] {
        let backends = backends(count);
        let config = config(StrategyKind::Maglev);
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| black_box(build(black_box(&config), &backends)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_picks, bench_loaded_picks, bench_maglev_build);
criterion_main!(benches);
