//! [`RedisStore`] against the shared store conformance suite, and what only Redis has.
//!
//! Needs a Redis server at `REDIS_URL` (default `redis://127.0.0.1:6379`). Without one, the
//! tests skip with a message, except under `CI=true`, where they fail. Every store gets a
//! prefix of its own, so runs and tests never see each other's keys.
#![cfg(feature = "redis")]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::AsyncCommands;
use tokio::time::{sleep, timeout};
use tollgate::Amount;
use tollgate::store::{AskId, ChannelStore, RedisStore, StoreErrorKind};

use common::store_suite::{WAIT, a, channel_id, opened, reserve, state};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test or run uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("tollgate-test-{:x}-{nanos:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A store on a fresh prefix, or `None` (after saying why) when no server answers outside CI.
async fn try_fresh_store() -> Option<RedisStore> {
    match RedisStore::connect(&redis_url()).await {
        Ok(store) => Some(store.with_prefix(&unique_prefix())),
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("no Redis at {} under CI: {e}", redis_url())
        }
        Err(e) => {
            eprintln!("skipping: no Redis at {} ({e})", redis_url());
            None
        }
    }
}

/// Skips the calling test when no server answers (outside CI).
macro_rules! fresh_store {
    () => {
        match try_fresh_store().await {
            Some(store) => store,
            None => return,
        }
    };
}

/// A second instance on the same keys: a new connection, not a clone.
fn second_handle_same_prefix(store: &RedisStore) -> impl Future<Output = RedisStore> + use<> {
    let (prefix, lease) = (store.prefix().to_owned(), store.lease());
    async move {
        let second = RedisStore::connect(&redis_url()).await.expect("a second connection");
        second.with_prefix(&prefix).with_lease(lease)
    }
}

common::store_suite!(
    make: fresh_store!(),
    short_lease: fresh_store!().with_lease(common::store_suite::SHORT_LEASE),
    twin: |store: &RedisStore| second_handle_same_prefix(store),
);

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn amounts_above_what_lua_holds_exactly_are_refused_and_change_nothing() {
    let store = fresh_store!();
    let max = RedisStore::MAX_AMOUNT;
    let huge = a(max.get() + 1);
    let fresh = channel_id();
    assert_eq!(store.open(&fresh, a(1), huge).await.unwrap_err().kind(), &StoreErrorKind::Invalid);
    assert_eq!(store.create(&fresh, huge, huge).await.unwrap_err().kind(), &StoreErrorKind::Invalid);
    assert_eq!(store.load(&fresh).await.unwrap(), None, "a refused open creates nothing");

    // The largest kept amount round-trips exactly.
    let id = opened(&store, max.get(), max.get()).await;
    let before = state(&store, &id).await;
    assert_eq!((before.accepted, before.deposit), (max, max));
    assert_eq!(store.accept(&id, huge, huge).await.unwrap_err().kind(), &StoreErrorKind::Invalid);
    let asked = store.ask(&id, AskId::new(), huge, WAIT).await;
    assert_eq!(asked.unwrap_err().kind(), &StoreErrorKind::Invalid);
    assert_eq!(state(&store, &id).await, before);

    // Bounds above it are fine: a reservation takes what there is, exactly.
    let r = store.reserve(&id, a(1), Amount::new(u128::MAX)).await.unwrap();
    assert_eq!(r.amount, max);
    assert_eq!(store.commit(&r, huge, 1).await.unwrap_err().kind(), &StoreErrorKind::Invalid);
    let odd = a(max.get() - 2);
    let released = store.release(&r, odd, 3).await.unwrap();
    assert_eq!((released.spent, released.reserved, released.available()), (odd, a(0), a(2)));
}

#[tokio::test]
async fn an_unreachable_server_fails_closed() {
    // Nothing listens on port 1: connecting must fail with Backend, and soon.
    let connecting = timeout(WAIT, RedisStore::connect("redis://127.0.0.1:1")).await;
    let error = connecting.expect("connecting to a dead port hung").unwrap_err();
    assert_eq!(error.kind(), &StoreErrorKind::Backend, "{error}");
    let bad_url = RedisStore::connect("not a url").await.unwrap_err();
    assert_eq!(bad_url.kind(), &StoreErrorKind::Backend);

    // A server that accepts connections but never answers: connecting or the first step
    // fails with Backend.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let outcome = timeout(WAIT, async {
        let store = RedisStore::connect(&url).await?;
        store.load(&channel_id()).await.map(drop)
    });
    let error = outcome.await.expect("a silent server made the store hang").unwrap_err();
    assert_eq!(error.kind(), &StoreErrorKind::Backend, "{error}");
    holding.abort();
}

#[tokio::test]
async fn the_polling_fallback_alone_wakes_a_waiter() {
    let Some(store) = try_fresh_store().await else { return };
    let polling = RedisStore::connect_polling_only(&redis_url()).await.unwrap().with_prefix(store.prefix());
    let id = opened(&store, 10, 100).await;
    let seen = state(&polling, &id).await.version;
    let waiting = async { timeout(WAIT, polling.changed(&id, seen)).await.expect("polling never woke") };
    let accepting = async {
        sleep(Duration::from_millis(200)).await;
        store.accept(&id, a(40), a(100)).await.unwrap()
    };
    let (woke, accepted) = tokio::join!(waiting, accepting);
    let woke = woke.unwrap();
    assert_eq!((woke.accepted, woke.version), (a(40), accepted.version));
}

#[tokio::test]
async fn every_channel_key_carries_the_channel_hash_tag() {
    let store = fresh_store!();
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 10, 10).await;
    store.ask(&id, AskId::new(), a(200), WAIT).await.unwrap();
    store.keep(&id, "vouchers", a(10u128.pow(30)), Bytes::from_static(b"v")).await.unwrap();
    assert!(store.lock("settle", tollgate::store::LockHolder::new(), WAIT).await.unwrap());

    let mut raw = raw_connection().await;
    let mut keys: Vec<String> = raw.keys(format!("{}:*", store.prefix())).await.unwrap();
    keys.sort();
    let tag = format!("{}:{{{}}}:", store.prefix(), id.as_str());
    let (channel, own_slot): (Vec<_>, Vec<_>) = keys.iter().partition(|key| key.starts_with(&tag));
    let suffixes: Vec<_> = channel.iter().map(|key| &key[tag.len()..]).collect();
    assert_eq!(suffixes, ["asks", "held", "shelf:vouchers", "shelves", "state"], "{keys:?}");
    // Only a shelf's index and a lock live in slots of their own.
    let expected = [format!("{}:lock:settle", store.prefix()), format!("{}:shelved:vouchers", store.prefix())];
    assert_eq!(own_slot, expected.iter().collect::<Vec<_>>(), "{keys:?}");

    store.release(&r, a(0), 0).await.unwrap();
    let _: () = raw.del(keys).await.unwrap();
}

#[tokio::test]
async fn a_waiter_that_gave_up_does_not_stop_the_next_from_waking() {
    let store = fresh_store!();
    let id = opened(&store, 10, 100).await;
    let seen = state(&store, &id).await.version;
    // A waiter that gives up drops its registration; the next one on the channel registers
    // anew and is woken.
    assert!(timeout(Duration::from_millis(100), store.changed(&id, seen)).await.is_err());
    let accepting = async {
        sleep(Duration::from_millis(100)).await;
        store.accept(&id, a(20), a(100)).await.unwrap()
    };
    let (woke, accepted) = tokio::join!(timeout(WAIT, store.changed(&id, seen)), accepting);
    assert_eq!(woke.expect("no wake-up").unwrap().version, accepted.version);
}

#[tokio::test]
async fn every_version_bump_is_announced_and_asks_are_not() {
    let store = fresh_store!();
    let id = opened(&store, 10, 100).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut listener = client.get_async_pubsub().await.unwrap();
    listener.subscribe("tollgate:changed").await.unwrap();
    let mut raw = raw_connection().await;
    let (subscribers,): (Vec<(String, u64)>,) =
        redis::pipe().cmd("PUBSUB").arg("NUMSUB").arg("tollgate:changed").query_async(&mut raw).await.unwrap();
    assert!(subscribers[0].1 >= 2, "the store's listener and this test's: {subscribers:?}");

    let key = format!("{}:{{{}}}:state", store.prefix(), id.as_str());
    let mut messages = listener.on_message();
    store.ask(&id, AskId::new(), a(50), WAIT).await.unwrap();
    store.accept(&id, a(20), a(100)).await.unwrap();
    // Other tests publish too: look for this channel's first message.
    let announced = timeout(WAIT, async {
        loop {
            let message = futures_util::StreamExt::next(&mut messages).await.expect("the subscription ended");
            let payload: String = message.get_payload().unwrap();
            if payload.starts_with(store.prefix()) {
                return payload;
            }
        }
    });
    assert_eq!(announced.await.expect("no announcement"), key, "the accept, not the ask");
}

/// A `redis-server` of this test's own on a free loopback port, stopped on drop.
struct OwnServer {
    child: std::process::Child,
    url: String,
}

impl OwnServer {
    fn start(port: u16) -> Option<OwnServer> {
        let spawned = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => Some(OwnServer { child, url: format!("redis://127.0.0.1:{port}") }),
            Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("no redis-server under CI: {e}"),
            Err(e) => {
                eprintln!("skipping: cannot start redis-server ({e})");
                None
            }
        }
    }

    async fn store(&self) -> RedisStore {
        for _ in 0..100 {
            if let Ok(store) = RedisStore::connect(&self.url).await {
                return store;
            }
            sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server at {} never answered", self.url);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_lost_server_fails_steps_closed_and_a_new_one_is_reconnected() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(server) = OwnServer::start(port) else { return };
    let store = server.store().await;
    let id = opened(&store, 10, 100).await;
    drop(server);

    // Every kind of step fails with Backend; the timeout only guards against a hang.
    let load = timeout(WAIT, store.load(&id)).await.expect("load hung on a lost server");
    assert_eq!(load.unwrap_err().kind(), &StoreErrorKind::Backend);
    let reserved = timeout(WAIT, store.reserve(&id, a(1), a(1))).await.expect("reserve hung");
    assert_eq!(reserved.unwrap_err().kind(), &StoreErrorKind::Backend);
    let waited = timeout(WAIT, store.changed(&id, 0)).await.expect("changed hung on a lost server");
    assert_eq!(waited.unwrap_err().kind(), &StoreErrorKind::Backend);

    // A server back on the address (empty: it keeps nothing) is used again.
    let Some(_back) = OwnServer::start(port) else { return };
    let reopened = timeout(WAIT, async {
        loop {
            match store.open(&id, a(5), a(50)).await {
                Ok(state) => return state,
                Err(e) => assert_eq!(e.kind(), &StoreErrorKind::Backend),
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(reopened.await.expect("never reconnected").accepted, a(5));
}
