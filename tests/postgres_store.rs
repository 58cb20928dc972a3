//! [`PostgresStore`] against the shared store conformance suite, plus what only PostgreSQL
//! has: migrations, exact numeric round trips, an unreachable server, the polling fallback.
//!
//! Needs a server at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without one the tests skip with a message, except under `CI=true`, where they fail.
//! Each store lives in a fresh schema `t_<pid>_<n>`. A test cannot drop its schema (the
//! suite takes the store), so each run first drops the schemas of runs whose process is
//! gone: at most one run's schemas stay behind.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio::time::{sleep, timeout};
use tokio_postgres::NoTls;
use tollgate::Amount;
use tollgate::store::{ChannelStore, PostgresStore, StoreErrorKind};

use common::store_suite::{WAIT, a, channel_id, opened, state};

common::store_suite!(
    make: match fresh_store().await { Some(store) => store, None => return },
    short_lease: match fresh_store().await {
        Some(store) => store.with_lease(common::store_suite::SHORT_LEASE),
        None => return,
    },
    twin: |store: &PostgresStore| another_pool_on_same_schema(store),
);

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema no other test (or concurrent run) uses, or `None` (outside CI) without a server.
async fn fresh_schema() -> Option<String> {
    static SWEPT: OnceCell<bool> = OnceCell::const_new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let reachable = *SWEPT.get_or_init(sweep_dead_runs).await;
    reachable.then(|| format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// A store in a fresh schema, or `None` (outside CI) without a server.
async fn fresh_store() -> Option<PostgresStore> {
    let schema = fresh_schema().await?;
    Some(PostgresStore::connect_in(&database_url(), &schema).await.expect("connect to a reachable server"))
}

/// A second instance on the same schema (and with the same lease): a new pool and a new
/// listener.
fn another_pool_on_same_schema(store: &PostgresStore) -> impl Future<Output = PostgresStore> + use<> {
    let (schema, lease) = (store.schema().to_owned(), store.lease());
    async move {
        let twin = PostgresStore::connect_in(&database_url(), &schema).await.expect("a second pool on the same schema");
        twin.with_lease(lease)
    }
}

/// A plain connection for looking behind the store's back.
async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Drops the `t_<pid>_<n>` schemas of earlier runs whose process has ended; whether the
/// server answers at all (it must under `CI=true`).
async fn sweep_dead_runs() -> bool {
    let connected = timeout(WAIT, tokio_postgres::connect(&database_url(), NoTls)).await;
    let (client, connection) = match connected {
        Ok(Ok(connected)) => connected,
        outcome => {
            let why = format!("no PostgreSQL at {}: {:?}", database_url(), outcome.map(|c| c.err()));
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipping: {why}");
            return false;
        }
    };
    tokio::spawn(connection);
    let rows = client.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%\\_%'", &[]).await.unwrap();
    for row in rows {
        let schema: &str = row.get(0);
        let Some(pid) = schema.split('_').nth(1).and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Another sweeper may win the race; either way it is gone.
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
    true
}

#[tokio::test]
async fn migrations_are_idempotent_and_racing_connects_both_succeed() {
    let Some(schema) = fresh_schema().await else { return };
    let url = database_url();
    let (first, second) =
        tokio::join!(PostgresStore::connect_in(&url, &schema), PostgresStore::connect_in(&url, &schema));
    let (first, second) = (first.expect("first connect"), second.expect("second connect"));
    let third = PostgresStore::connect_in(&url, &schema).await.expect("a connect after the migrations");
    let migrations = raw_client()
        .await
        .query(&format!("SELECT version FROM {schema}.tollgate_migrations ORDER BY version"), &[])
        .await
        .unwrap();
    let versions: Vec<i32> = migrations.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5], "each migration applied once");
    // All three see one set of tables.
    let id = opened(&first, 10, 10).await;
    second.accept(&id, a(7), a(20)).await.unwrap();
    assert_eq!(state(&third, &id).await.accepted, a(10));
    assert_eq!(state(&third, &id).await.deposit, a(20));
}

#[tokio::test]
async fn huge_amounts_round_trip_exactly() {
    let Some(store) = fresh_store().await else { return };
    let (top, id) = (u128::MAX, channel_id());
    store.open(&id, a(top - 3), a(top - 1)).await.unwrap();
    let s = store.accept(&id, a(top - 1), a(top)).await.unwrap();
    assert_eq!((s.accepted, s.deposit), (a(top - 1), a(top)));
    let r = store.reserve(&id, a(top - 2), a(top)).await.unwrap();
    assert_eq!(r.amount, a(top - 1));
    store.renew(&r, a(top - 5), u64::MAX).await.unwrap();
    let s = store.release(&r, a(top - 4), u64::MAX).await.unwrap();
    assert_eq!((s.spent, s.reserved, s.units, s.available()), (a(top - 4), Amount::ZERO, u64::MAX, a(3)));
    assert_eq!(state(&store, &id).await, s);
    store.keep(&id, "huge", a(top), Bytes::from_static(b"max")).await.unwrap();
    store.keep(&id, "huge", a(top - 1), Bytes::from_static(b"max-1")).await.unwrap();
    let kept = store.kept(&id, "huge").await.unwrap();
    assert_eq!(kept, vec![(a(top - 1), Bytes::from_static(b"max-1")), (a(top), Bytes::from_static(b"max"))]);
}

#[tokio::test]
async fn an_unreachable_server_fails_closed() {
    // Nothing listens on port 1; the guard only turns a hang into a failure.
    let connecting = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test");
    let error = timeout(WAIT, connecting).await.expect("connect hung").expect_err("connected to nothing");
    assert_eq!(error.kind(), &StoreErrorKind::Backend, "{error}");
}

#[tokio::test]
async fn a_schema_must_be_a_plain_identifier() {
    for schema in ["", "Upper", "semi;colon", "pg_catalog", "a\"b"] {
        let error = PostgresStore::connect_in(&database_url(), schema).await.expect_err(schema);
        assert_eq!(error.kind(), &StoreErrorKind::Invalid, "{schema:?}: {error}");
    }
}

/// The suite's wake-up test passes through notifications only when the listener is up (a
/// down listener polls); this shows it comes up.
#[tokio::test]
async fn the_listener_comes_up() {
    let Some(store) = fresh_store().await else { return };
    let listening = async {
        while !format!("{store:?}").contains("listening: true") {
            sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, listening).await.expect("the listener never came up");
    let polling = store.clone().without_listener();
    assert!(format!("{polling:?}").contains("listening: false"), "{polling:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_wakes_a_waiter() {
    let Some(store) = fresh_store().await else { return };
    let polling = another_pool_on_same_schema(&store).await.without_listener();
    let id = opened(&store, 10, 100).await;
    let seen = state(&polling, &id).await.version;
    let waiter = tokio::spawn({
        let (polling, id) = (polling.clone(), id.clone());
        async move { timeout(WAIT, polling.changed(&id, seen)).await }
    });
    sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "woke before anything changed");
    store.accept(&id, a(40), a(100)).await.unwrap();
    let woke = waiter.await.unwrap().expect("the polling waiter never woke").unwrap();
    assert_eq!(woke.accepted, a(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_wakes_while_its_listener_reconnects() {
    let Some(store) = fresh_store().await else { return };
    let other = another_pool_on_same_schema(&store).await;
    let id = opened(&store, 10, 100).await;
    let seen = state(&store, &id).await.version;
    let waiter = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move { timeout(WAIT, store.changed(&id, seen)).await }
    });
    // Cut every listening connection on the schema, this store's included.
    let killed = raw_client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1",
            &[&format!("LISTEN tollgate_changes_{}", store.schema())],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "no listener found to cut");
    other.accept(&id, a(40), a(100)).await.unwrap();
    let woke = waiter.await.unwrap().expect("the wake-up never came").unwrap();
    assert_eq!(woke.accepted, a(40));
    // And once reconnected, notifications flow again.
    let seen = woke.version;
    let later = async {
        sleep(Duration::from_millis(1500)).await;
        other.accept(&id, a(50), a(100)).await.unwrap();
    };
    let (woke, ()) = tokio::join!(timeout(WAIT, store.changed(&id, seen)), later);
    assert_eq!(woke.expect("no wake-up after reconnecting").unwrap().accepted, a(50));
}

/// A step dropped halfway (its caller timed out, its task was aborted) either happened
/// whole or not at all, and leaves no connection inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_step_happens_whole_or_not_at_all() {
    let Some(store) = fresh_store().await else { return };
    let id = opened(&store, 1000, 1000).await;
    for round in 0..40u64 {
        let task = tokio::spawn({
            let (store, id) = (store.clone(), id.clone());
            async move { store.reserve(&id, a(1), a(1)).await }
        });
        // Abort at varying points of the step's round trips.
        sleep(Duration::from_micros(round * 397 % 12_000)).await;
        task.abort();
        let _ = task.await;
    }
    // An abandoned step runs on to its end on its own task (see the next test): wait for
    // the last ones, then the books must agree.
    let (mut reserved, mut held) = (String::new(), String::from("?"));
    let started = tokio::time::Instant::now();
    while reserved != held && started.elapsed() < WAIT {
        sleep(Duration::from_millis(50)).await;
        reserved = state(&store, &id).await.reserved.to_string();
        held = raw_client()
            .await
            .query_one(
                &format!("SELECT coalesce(sum(amount), 0)::text FROM {}.tollgate_reservations", store.schema()),
                &[],
            )
            .await
            .unwrap()
            .get(0);
    }
    assert_eq!(reserved, held, "the channel counts exactly the reservations that exist");
    // Every pooled connection still works: more steps than the pool has connections.
    for _ in 0..40 {
        let r = store.reserve(&id, a(1), a(1)).await.expect("a step after the aborted ones");
        store.release(&r, a(1), 1).await.unwrap();
    }
    assert_eq!(state(&store, &id).await.spent, a(40));
}

/// A step holds its channel's row lock across round trips. A caller that stops polling it
/// half-way (a stream whose client stopped reading) must not hold that lock: once, every
/// other step on the channel, on every instance, waited out the statement timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_caller_stops_polling_does_not_block_the_channel() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    let Some(store) = fresh_store().await else { return };
    let other = another_pool_on_same_schema(&store).await;
    let id = opened(&store, 100, 100).await;
    let mut stalled = pin!(store.reserve(&id, a(1), a(1)));
    // Drive it into its transaction (connection, BEGIN, row lock), then stop polling.
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        if let Poll::Ready(result) = stalled.as_mut().poll(&mut cx) {
            result.expect("reserve");
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let taken = timeout(WAIT, other.reserve(&id, a(2), a(2))).await.expect("a hang");
    let taken = taken.unwrap_or_else(|e| {
        panic!("the other instance waited on the stalled step's lock: {e} after {:?}", started.elapsed())
    });
    assert_eq!(taken.amount, a(2));
    let s = state(&other, &id).await;
    assert!(s.reserved == a(3) || s.reserved == a(2), "{s:?}");
}
