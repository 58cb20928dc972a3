//! What one store step costs: a stream's reserve → renew × N → release, on the in-process
//! `MemoryStore` and (with the `redis` feature and a server at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`) on `RedisStore`. Throughput is per step, so the two read as
//! the per-operation cost of each backend.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};

/// Renewals per stream: a stream of a few seconds renewing every lease third.
const RENEWALS: u64 = 8;

/// One stream's steps on `id`.
async fn stream<S: ChannelStore>(store: &S, id: &ChannelId) {
    let r = store.reserve(id, Amount::new(1), Amount::new(10)).await.expect("reserve");
    for delivered in 0..RENEWALS {
        store.renew(&r, Amount::new(u128::from(delivered)), delivered).await.expect("renew");
    }
    store.release(&r, Amount::new(1), 1).await.expect("release");
}

fn bench_store<S: ChannelStore>(c: &mut Criterion, runtime: &Runtime, name: &str, store: S) -> ChannelId {
    let id = ChannelId::new(format!("bench-{}-{}", name, std::process::id()));
    // Enough for every iteration (each spends 1), and within what any store keeps.
    let funds = Amount::new(1 << 50);
    runtime.block_on(store.open(&id, funds, funds)).expect("open");
    let mut group = c.benchmark_group("store_round_trips");
    group.throughput(Throughput::Elements(RENEWALS + 2));
    group.bench_function(BenchmarkId::new(name, format!("reserve+{RENEWALS}renew+release")), |b| {
        b.to_async(runtime).iter(|| stream(&store, &id));
    });
    group.finish();
    id
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    bench_store(c, &runtime, "memory", MemoryStore::new());
    #[cfg(feature = "redis")]
    {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        match runtime.block_on(tollgate::store::RedisStore::connect(&url)) {
            Ok(store) => {
                let id = bench_store(c, &runtime, "redis", store.with_prefix("tollgate-bench"));
                // The bench's channel goes with it (the store has no delete).
                let keys: Vec<String> =
                    ["state", "held", "asks"].iter().map(|k| format!("tollgate-bench:{{{id}}}:{k}")).collect();
                let cleaned = runtime.block_on(async {
                    let client = redis::Client::open(url.as_str())?;
                    let mut connection = client.get_multiplexed_async_connection().await?;
                    redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut connection).await
                });
                if let Err(e) = cleaned {
                    eprintln!("could not delete the bench's keys {keys:?}: {e}");
                }
            }
            Err(e) => eprintln!("skipping the Redis store: no server at {url} ({e})"),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
