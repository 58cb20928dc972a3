//! One stream's life on a store: reserve → renew × N → release, on [`PostgresStore`] against
//! [`MemoryStore`]. Only the ratio measured in one run means anything on a shared machine.
//!
//! Needs PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! without one only the memory store runs. The bench leaves its schema `bench_store`
//! behind (reused on the next run).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore, PostgresStore};

/// Renewals per stream: a 30 s stream renewing every 10 s has 3; a long one many more.
const RENEWALS: [u64; 2] = [1, 10];

async fn stream<S: ChannelStore>(store: &S, id: &ChannelId, renewals: u64) {
    let reservation = store.reserve(id, Amount::new(1), Amount::new(100)).await.expect("reserve");
    for delivered in 1..=renewals {
        store.renew(&reservation, Amount::new(u128::from(delivered)), delivered).await.expect("renew");
    }
    store.release(&reservation, Amount::new(u128::from(renewals)), renewals).await.expect("release");
}

fn lifecycle(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let postgres = runtime.block_on(async {
        match PostgresStore::connect_in(&url, "bench_store").await {
            Ok(store) => Some(store),
            Err(error) => {
                eprintln!("skipping PostgreSQL: {error}");
                None
            }
        }
    });
    let memory = MemoryStore::new();
    // Plenty for every iteration criterion runs: spent grows by `renewals` per stream.
    let funds = Amount::new(u128::from(u64::MAX));
    let id = ChannelId::new(format!("bench-{}", std::process::id()));
    runtime.block_on(async {
        memory.open(&id, funds, funds).await.expect("open");
        if let Some(store) = &postgres {
            store.open(&id, funds, funds).await.expect("open");
        }
    });
    let mut group = c.benchmark_group("store_stream");
    for renewals in RENEWALS {
        group.bench_with_input(BenchmarkId::new("memory", renewals), &renewals, |b, &n| {
            b.to_async(&runtime).iter(|| stream(&memory, &id, n));
        });
        if let Some(store) = &postgres {
            group.bench_with_input(BenchmarkId::new("postgres", renewals), &renewals, |b, &n| {
                b.to_async(&runtime).iter(|| stream(store, &id, n));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
