//! What a shared store adds: leases that lapse, shelves of method data, locks, and two
//! handles on one store (two instances) that race and wake each other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tollgate::Amount;
use tollgate::store::{ChannelStore, LockHolder, StoreErrorKind};

use super::{WAIT, a, assert_consistent, channel_id, opened, reserve, state};

/// Sleeps until `store`'s lease has surely lapsed.
pub async fn outlive_lease<S: ChannelStore>(store: &S) {
    sleep(store.lease() + store.lease() / 2 + Duration::from_millis(50)).await;
}

pub async fn a_dead_holders_lease_is_reclaimed_with_its_renewed_usage<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 50, 50).await;
    store.renew(&r, a(20), 2).await.unwrap();
    // The holder dies here: it never releases.
    outlive_lease(&store).await;
    let s = state(&store, &id).await;
    assert_eq!((s.spent, s.reserved, s.units), (a(20), a(0), 2), "{s:?}");
    assert_eq!(s.available(), a(80));
    // The holder's late steps change nothing.
    assert_eq!(store.release(&r, a(50), 9).await.unwrap().spent, a(20));
    for result in [
        store.renew(&r, a(30), 3).await.err().map(|e| e.kind().clone()),
        store.commit(&r, a(30), 3).await.err().map(|e| e.kind().clone()),
        store.extend(&r, a(0), a(10)).await.err().map(|e| e.kind().clone()),
    ] {
        assert_eq!(result, Some(StoreErrorKind::NotFound));
    }
    assert_eq!(state(&store, &id).await.spent, a(20));
}

pub async fn a_lapsed_lease_keeps_the_larger_of_committed_and_renewed<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 50, 50).await;
    store.commit(&r, a(30), 3).await.unwrap();
    store.renew(&r, a(10), 1).await.unwrap();
    outlive_lease(&store).await;
    let s = state(&store, &id).await;
    assert_eq!((s.spent, s.reserved, s.units), (a(30), a(0), 3), "{s:?}");
}

pub async fn renewing_keeps_a_lease_alive<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 50, 50).await;
    for delivered in 1..=4u128 {
        sleep(store.lease() / 2).await;
        store.renew(&r, a(delivered), 1).await.unwrap();
    }
    // Alive for twice its lease: nothing reclaimed, and the renewals spent nothing.
    let s = state(&store, &id).await;
    assert_eq!((s.spent, s.reserved), (a(0), a(50)), "{s:?}");
    // The live holder's final figure wins over its renewals.
    assert_eq!(store.release(&r, a(3), 3).await.unwrap().spent, a(3));
    assert_eq!(state(&store, &id).await.reserved, a(0));
}

pub async fn renew_checks_its_figure_and_wakes_no_one<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 50, 50).await;
    let before = state(&store, &id).await;
    assert_eq!(store.renew(&r, a(51), 1).await.unwrap_err().kind(), &StoreErrorKind::Invalid);
    store.renew(&r, a(10), 1).await.unwrap();
    store.renew(&r, a(5), 1).await.unwrap(); // lower: only the lease moves
    assert_eq!(state(&store, &id).await, before, "a renewal is no payment");
    store.release(&r, a(0), 0).await.unwrap();
    assert_eq!(store.renew(&r, a(1), 1).await.unwrap_err().kind(), &StoreErrorKind::NotFound);
}

pub async fn shelves_keep_replace_list_and_discard<S: ChannelStore>(store: S) {
    let (id, other) = (channel_id(), channel_id());
    let shelf = format!("vouchers-{}", id.as_str());
    let big = a(10u128.pow(30) + 7);
    assert!(store.kept(&id, &shelf).await.unwrap().is_empty());
    for (key, value) in [(a(30), "thirty"), (big, "big"), (a(2), "two"), (a(30), "THIRTY")] {
        store.keep(&id, &shelf, key, Bytes::from_static(value.as_bytes())).await.unwrap();
    }
    store.keep(&other, &shelf, a(1), Bytes::from_static(b"other")).await.unwrap();
    store.keep(&id, "another-shelf", a(1), Bytes::from_static(b"apart")).await.unwrap();
    let kept = store.kept(&id, &shelf).await.unwrap();
    let expected = vec![
        (a(2), Bytes::from_static(b"two")),
        (a(30), Bytes::from_static(b"THIRTY")),
        (big, Bytes::from_static(b"big")),
    ];
    assert_eq!(kept, expected, "ascending by key, last write wins, big keys exact");
    let mut shelved = store.shelved(&shelf).await.unwrap();
    shelved.sort();
    let mut both = vec![id.clone(), other.clone()];
    both.sort();
    assert_eq!(shelved, both);

    store.discard(&id, &shelf, Some(&[a(2), a(999)])).await.unwrap();
    assert_eq!(store.kept(&id, &shelf).await.unwrap().len(), 2);
    store.discard(&id, &shelf, None).await.unwrap();
    assert!(store.kept(&id, &shelf).await.unwrap().is_empty());
    assert_eq!(store.shelved(&shelf).await.unwrap(), vec![other.clone()]);
    store.discard(&other, &shelf, Some(&[a(1)])).await.unwrap();
    assert!(store.shelved(&shelf).await.unwrap().is_empty(), "an emptied shelf lists no channel");
    assert_eq!(store.kept(&id, "another-shelf").await.unwrap().len(), 1, "shelves are apart");
    store.discard(&id, "another-shelf", None).await.unwrap();
}

pub async fn a_lock_has_one_holder_until_it_lapses_or_is_given_up<S: ChannelStore>(store: S) {
    let name = format!("settle:{}", channel_id());
    let (first, second) = (LockHolder::new(), LockHolder::new());
    let ttl = Duration::from_millis(400);
    assert!(store.lock(&name, first, ttl).await.unwrap());
    assert!(!store.lock(&name, second, ttl).await.unwrap());
    assert!(store.lock(&name, first, ttl).await.unwrap(), "the holder renews");
    store.unlock(&name, second).await.unwrap(); // not the holder: nothing
    assert!(!store.lock(&name, second, ttl).await.unwrap());
    store.unlock(&name, first).await.unwrap();
    assert!(store.lock(&name, second, ttl).await.unwrap());
    sleep(ttl * 2).await;
    assert!(store.lock(&name, first, ttl).await.unwrap(), "a lapsed lock is free");
    store.unlock(&name, first).await.unwrap();
}

/// Makes a second handle on the same store, as a second instance would.
pub trait Twin<S>: Fn(&S) -> Self::Made {
    type Made: Future<Output = S>;
}

impl<S, F: Future<Output = S>, T: Fn(&S) -> F> Twin<S> for T {
    type Made = F;
}

pub async fn two_instances_racing_never_overspend<S: ChannelStore>(store: S, twin: impl Twin<S>) {
    let second = Arc::new(twin(&store).await);
    let first = Arc::new(store);
    for _ in 0..10 {
        let id = opened(&*first, 100, 100).await;
        let mut tasks = JoinSet::new();
        for n in 0..32 {
            let (first, second, id) = (first.clone(), second.clone(), id.clone());
            tasks.spawn(async move {
                let granted = if n % 2 == 0 {
                    first.reserve(&id, a(7), a(7)).await
                } else {
                    second.reserve(&id, a(7), a(7)).await
                };
                granted.is_ok()
            });
        }
        let mut granted = 0;
        while let Some(joined) = tasks.join_next().await {
            granted += u32::from(joined.unwrap());
        }
        let s = state(&*second, &id).await;
        assert_consistent(&s);
        assert_eq!((granted, s.reserved), (14, a(98)), "{s:?}");
    }
}

pub async fn a_change_on_one_instance_wakes_the_other<S: ChannelStore>(store: S, twin: impl Twin<S>) {
    let second = twin(&store).await;
    let id = opened(&store, 10, 100).await;
    let seen = state(&second, &id).await.version;
    let waiting = async { timeout(WAIT, second.changed(&id, seen)).await.expect("the wake-up never came") };
    let accepting = async {
        sleep(Duration::from_millis(100)).await;
        store.accept(&id, a(40), a(100)).await.unwrap();
    };
    let (woke, ()) = tokio::join!(waiting, accepting);
    assert_eq!(woke.unwrap().accepted, a(40));
}

pub async fn a_lease_of_a_dead_instance_is_reclaimed_by_the_other<S: ChannelStore>(store: S, twin: impl Twin<S>) {
    let second = twin(&store).await;
    let id = opened(&store, 100, 100).await;
    let r = reserve(&store, &id, 60, 60).await;
    store.renew(&r, a(25), 5).await.unwrap();
    drop(store); // the instance dies with its lease
    assert!(second.reserve(&id, a(60), a(60)).await.is_err(), "still held");
    outlive_lease(&second).await;
    let taken = second.reserve(&id, a(75), a(75)).await.expect("the dead lease came back");
    assert_eq!(taken.amount, a(75));
    let s = state(&second, &id).await;
    assert_eq!((s.spent, s.reserved, s.units), (a(25), a(75), 5));
    assert_consistent(&s);
    let _ = Amount::ZERO;
}
