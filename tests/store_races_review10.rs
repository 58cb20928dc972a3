//! Review of issue 10, threat 5: a payer racing itself on two instances of one store.
//! Randomized (seeded, bounded) runs of reserve / renew / extend / commit / release /
//! abandon through two handles (two connections for Redis, two pools for PostgreSQL, two
//! clones for memory), with leases short enough to lapse mid-run, so renewals and releases
//! race reclaims. Every run checks the books:
//!
//! - `spent + reserved ≤ accepted` whenever a step answers;
//! - once every lease is released or lapsed: nothing stays reserved, and what was spent
//!   lies between what the reservations committed and what they reported (a reservation
//!   is charged its release figure, or, if it lapsed first, the larger of its committed and
//!   renewed figures: never more than the highest figure its holder reported).
//!
//! Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`), PostgreSQL at `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`): without a server the test skips
//! with a message, except under `CI=true`, where it fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore, StoreErrorKind};

const LEASE: Duration = Duration::from_millis(120);
const ACCEPTED: u128 = 10_000;
const TASKS: u64 = 8;
const STEPS: usize = 12;
const RUNS: u64 = 3;

/// A small deterministic generator (xorshift): the runs are random but repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What one holder knows about its reservations: the least the store may have charged
/// (committed figures it acknowledged) and the most (the highest figure it reported).
#[derive(Default)]
struct Bounds {
    least: u128,
    most: u128,
}

fn a(n: u128) -> Amount {
    Amount::new(n)
}

fn consistent(state: &ChannelState) {
    assert!(state.spent.get() + state.reserved.get() <= state.accepted.get(), "books broken: {state:?}");
}

/// One holder: `STEPS` reservations on `store`, each used and then released or abandoned.
async fn holder<S: ChannelStore>(store: Arc<S>, id: ChannelId, seed: u64) -> Bounds {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut bounds = Bounds::default();
    for _ in 0..STEPS {
        let Ok(mut lease) = store.reserve(&id, a(1), a(u128::from(rng.below(300)) + 1)).await else {
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
            continue;
        };
        let (mut committed, mut reported, mut alive) = (0u128, 0u128, true);
        for _ in 0..rng.below(5) {
            let figure = u128::from(rng.below(u64::try_from(lease.amount.get()).unwrap() + 1));
            let (outcome, reports) = match rng.below(4) {
                0 => (store.renew(&lease, a(figure), figure as u64).await.map(|()| false), true),
                1 => match store.extend(&lease, a(1), a(u128::from(rng.below(100)) + 1)).await {
                    Ok(grown) => {
                        lease = grown;
                        (Ok(false), false)
                    }
                    Err(e) => (Err(e), false),
                },
                2 => {
                    (store.commit(&lease, a(figure), figure as u64).await.map(|s| consistent(&s)).map(|()| true), true)
                }
                _ => {
                    // Sometimes past the lease: the next step races (or follows) a reclaim.
                    tokio::time::sleep(Duration::from_millis(rng.below(2 * LEASE.as_millis() as u64))).await;
                    (Ok(false), false)
                }
            };
            match outcome {
                Ok(was_commit) => {
                    if reports {
                        reported = reported.max(figure);
                    }
                    if was_commit {
                        committed = committed.max(figure);
                    }
                }
                Err(e) if *e.kind() == StoreErrorKind::NotFound => {
                    alive = false;
                    break;
                }
                Err(e) if matches!(e.kind(), StoreErrorKind::Invalid | StoreErrorKind::Insufficient { .. }) => {}
                Err(e) => panic!("store failed: {e}"),
            }
        }
        // `reported` covers renewals and commits alike (a renew below a commit changes
        // nothing; a commit is a floor). The commits acknowledged are the least.
        let used = if alive && rng.below(4) != 0 {
            let used = u128::from(rng.below(u64::try_from(lease.amount.get()).unwrap() + 1));
            match store.release(&lease, a(used), used as u64).await {
                Ok(state) => consistent(&state),
                Err(e) if *e.kind() == StoreErrorKind::Invalid => {}
                Err(e) => panic!("release failed: {e}"),
            }
            used
        } else {
            0 // abandoned: the holder died with its lease
        };
        bounds.least += committed;
        bounds.most += reported.max(used);
    }
    bounds
}

/// The randomized race on `first` and its `second` handle.
async fn race<S: ChannelStore>(first: S, second: S, name: &str) {
    let (first, second) = (Arc::new(first), Arc::new(second));
    for run in 0..RUNS {
        let id = ChannelId::new(format!("review10-race-{name}-{run}-{}", std::process::id()));
        first.open(&id, a(ACCEPTED), a(ACCEPTED)).await.unwrap();
        let mut tasks = JoinSet::new();
        for n in 0..TASKS {
            let store = if n % 2 == 0 { first.clone() } else { second.clone() };
            tasks.spawn(holder(store, id.clone(), run * 100 + n + 1));
        }
        let (mut least, mut most) = (0u128, 0u128);
        while let Some(joined) = tasks.join_next().await {
            let bounds = joined.unwrap();
            (least, most) = (least + bounds.least, most + bounds.most);
        }
        tokio::time::sleep(LEASE * 2).await;
        let s = second.load(&id).await.unwrap().unwrap();
        consistent(&s);
        assert_eq!(s.reserved, Amount::ZERO, "a lease stayed reserved after every holder was gone: {s:?}");
        assert!(most > 0 && s.units > 0, "the run exercised nothing: {s:?}");
        assert!(s.spent.get() >= least, "less spent than committed: {s:?}, least {least}");
        assert!(s.spent.get() <= most, "charged more than any holder reported: {s:?}, most {most}");
        assert_eq!(first.load(&id).await.unwrap().unwrap().spent, s.spent, "the two handles disagree");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_memory_clones_racing_with_lapsing_leases_keep_the_books() {
    let store = MemoryStore::new().with_lease(LEASE);
    race(store.clone(), store, "memory").await;
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_connections_racing_with_lapsing_leases_keep_the_books() {
    use tollgate::store::RedisStore;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("tollgate-review10-{}-{}", std::process::id(), rand_suffix());
    let (first, second) = match tokio::try_join!(RedisStore::connect(&url), RedisStore::connect(&url)) {
        Ok(pair) => pair,
        Err(e) if required() => panic!("no Redis at {url} under CI: {e}"),
        Err(e) => return eprintln!("skipping: no Redis at {url} ({e})"),
    };
    let (first, second) = (first.with_prefix(&prefix).with_lease(LEASE), second.with_prefix(&prefix).with_lease(LEASE));
    race(first, second, "redis").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_pools_racing_with_lapsing_leases_keep_the_books() {
    use tollgate::store::PostgresStore;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // The `t_<pid>_…` pattern: tests/postgres_store.rs sweeps the schemas of dead runs.
    let schema = format!("t_{}_review10_{}", std::process::id(), rand_suffix());
    let first = match PostgresStore::connect_in(&url, &schema).await {
        Ok(store) => store.with_lease(LEASE),
        Err(e) if required() => panic!("no PostgreSQL at {url} under CI: {e}"),
        Err(e) => return eprintln!("skipping: no PostgreSQL at {url} ({e})"),
    };
    let second = PostgresStore::connect_in(&url, &schema).await.expect("a second pool").with_lease(LEASE);
    race(first, second, "postgres").await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

/// A suffix no concurrent run shares.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
