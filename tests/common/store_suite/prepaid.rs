//! Prepaid balances: deposits credited once per reference, and releases that debit and
//! record usage in one step.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tollgate::store::{ChannelStore, StoreErrorKind, reclaimed_record};

use super::{Twin, a, assert_consistent, channel_id, outlive_lease, reserve, state};

/// A deposit reference no other test (or run) uses.
fn reference() -> String {
    format!("0xdeposit-{}", channel_id())
}

pub async fn credit_claims_a_reference_once<S: ChannelStore>(store: S) {
    let (id, first, second) = (channel_id(), reference(), reference());
    let credited = store.credit(&id, a(100), &first).await.unwrap();
    assert!(credited.fresh);
    assert_eq!((credited.state.accepted, credited.state.deposit), (a(100), a(100)));
    // The same deposit again (a retry, another instance): nothing changes.
    let again = store.credit(&id, a(100), &first).await.unwrap();
    assert!(!again.fresh);
    assert_eq!(again.state, state(&store, &id).await);
    assert_eq!(again.state.accepted, a(100));
    // Another deposit adds to the balance, whatever is spent or reserved.
    let r = reserve(&store, &id, 30, 30).await;
    store.release(&r, a(20), 1).await.unwrap();
    let more = store.credit(&id, a(50), &second).await.unwrap();
    assert!(more.fresh);
    let s = more.state;
    assert_eq!((s.accepted, s.deposit, s.spent, s.available()), (a(150), a(150), a(20), a(130)));
    assert_consistent(&s);
}

pub async fn credit_on_a_finalized_channel_is_refused_and_claims_nothing<S: ChannelStore>(store: S) {
    let (id, deposit) = (channel_id(), reference());
    store.credit(&id, a(10), &reference()).await.unwrap();
    store.finalize(&id).await.unwrap();
    let refused = store.credit(&id, a(5), &deposit).await.unwrap_err();
    assert_eq!(refused.kind(), &StoreErrorKind::Finalized);
    assert_eq!(state(&store, &id).await.accepted, a(10));
}

pub async fn release_with_usage_debits_and_records_once<S: ChannelStore>(store: S) {
    let id = channel_id();
    assert!(store.usage(&id, 10).await.unwrap().is_empty());
    store.credit(&id, a(100), &reference()).await.unwrap();
    let r = reserve(&store, &id, 10, 40).await;
    assert_eq!(r.amount, a(40));
    let s = store.release_with_usage(&r, a(25), 3, Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    assert_eq!((s.spent, s.reserved, s.units), (a(25), a(0), 3));
    // Released already: neither the balance nor the history moves.
    let again = store.release_with_usage(&r, a(40), 9, Bytes::from_static(b"{\"n\":9}")).await.unwrap();
    assert_eq!((again.spent, again.units), (a(25), 3));
    let r = reserve(&store, &id, 5, 5).await;
    store.release_with_usage(&r, a(5), 1, Bytes::from_static(b"{\"n\":2}")).await.unwrap();
    let usage = store.usage(&id, 10).await.unwrap();
    assert_eq!(usage, vec![Bytes::from_static(b"{\"n\":2}"), Bytes::from_static(b"{\"n\":1}")]);
    assert_eq!(store.usage(&id, 1).await.unwrap(), vec![Bytes::from_static(b"{\"n\":2}")]);
    // A refused release (above the reservation) records nothing.
    let r = reserve(&store, &id, 5, 5).await;
    let refused = store.release_with_usage(&r, a(6), 1, Bytes::from_static(b"{\"n\":3}")).await.unwrap_err();
    assert_eq!(refused.kind(), &StoreErrorKind::Invalid);
    assert_eq!(store.usage(&id, 10).await.unwrap().len(), 2);
    assert_eq!(state(&store, &id).await.spent, a(30));
}

pub async fn a_reclaimed_reservation_leaves_the_usage_record_it_was_reserved_with<S: ChannelStore>(store: S) {
    let id = channel_id();
    store.credit(&id, a(100), &reference()).await.unwrap();
    let head = Bytes::from_static(b"{\"n\":1");
    // A response that dies after its last renewal (grown and renewed first: the head stays).
    let dies = store.reserve_recording(&id, a(40), a(40), head.clone()).await.unwrap();
    let dies = store.extend(&dies, a(0), a(20)).await.unwrap();
    assert_eq!(dies.amount, a(60));
    store.renew(&dies, a(20), 2).await.unwrap();
    // One released by its holder: its own record only, never the head's as well.
    let lives = store.reserve_recording(&id, a(10), a(10), Bytes::from_static(b"{\"n\":2")).await.unwrap();
    let released = Bytes::from_static(b"{\"n\":2,\"cost\":\"5\"}");
    store.release_with_usage(&lives, a(5), 1, released.clone()).await.unwrap();
    // One reserved without a head dies too: reclaimed, recorded by no one.
    let plain = reserve(&store, &id, 10, 10).await;
    store.renew(&plain, a(3), 1).await.unwrap();
    outlive_lease(&store).await;
    let s = state(&store, &id).await;
    assert_eq!((s.spent, s.reserved, s.units), (a(28), a(0), 4), "{s:?}");
    assert_consistent(&s);
    let reclaimed = Bytes::from(reclaimed_record(&head, a(20), 2));
    assert_eq!(reclaimed, Bytes::from_static(b"{\"n\":1,\"units\":2,\"cost\":\"20\",\"reclaimed\":true}"));
    assert_eq!(store.usage(&id, 10).await.unwrap(), vec![reclaimed.clone(), released.clone()]);
    // The dead holder's late release, and later steps, neither charge nor record again.
    let late = store.release_with_usage(&dies, a(60), 9, Bytes::from_static(b"{\"n\":9}")).await.unwrap();
    assert_eq!(late.spent, a(28));
    let again = store.reserve_recording(&id, a(1), a(1), Bytes::from_static(b"{\"n\":3")).await.unwrap();
    store.release(&again, a(1), 1).await.unwrap();
    assert_eq!(state(&store, &id).await.spent, a(29));
    assert_eq!(store.usage(&id, 10).await.unwrap(), vec![reclaimed, released]);
}

pub async fn racing_credits_of_one_reference_credit_once<S: ChannelStore>(store: S) {
    const CLAIMERS: usize = 16;
    let store = Arc::new(store);
    for _ in 0..10 {
        let (id, deposit) = (channel_id(), reference());
        let barrier = Arc::new(Barrier::new(CLAIMERS));
        let mut tasks = JoinSet::new();
        for _ in 0..CLAIMERS {
            let (store, id, deposit, barrier) = (store.clone(), id.clone(), deposit.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                store.credit(&id, a(70), &deposit).await.unwrap().fresh
            });
        }
        let mut fresh = 0;
        while let Some(joined) = tasks.join_next().await {
            fresh += usize::from(joined.unwrap());
        }
        assert_eq!(fresh, 1);
        assert_eq!(state(&*store, &id).await.accepted, a(70));
    }
}

pub async fn two_instances_crediting_one_deposit_credit_once<S: ChannelStore>(store: S, twin: impl Twin<S>) {
    let second = Arc::new(twin(&store).await);
    let first = Arc::new(store);
    for _ in 0..10 {
        let (id, deposit) = (channel_id(), reference());
        let barrier = Arc::new(Barrier::new(2));
        let claim = |store: Arc<S>| {
            let (id, deposit, barrier) = (id.clone(), deposit.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                store.credit(&id, a(70), &deposit).await.unwrap().fresh
            }
        };
        let (one, two) = tokio::join!(tokio::spawn(claim(first.clone())), tokio::spawn(claim(second.clone())));
        assert_eq!(usize::from(one.unwrap()) + usize::from(two.unwrap()), 1);
        assert_eq!(state(&*second, &id).await.accepted, a(70));
    }
}

pub async fn sixteen_reservations_on_a_small_balance_never_overspend<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = channel_id();
    store.credit(&id, a(100), &reference()).await.unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let mut tasks = JoinSet::new();
    for n in 0..16u8 {
        let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            // Each wants up to 15 and takes what is left if at least 4.
            let Ok(r) = store.reserve(&id, a(4), a(15)).await else { return };
            let used = r.amount.min(a(12));
            let record = Bytes::from(format!("{{\"n\":{n},\"cost\":{used}}}"));
            store.release_with_usage(&r, used, 1, record).await.unwrap();
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let s = state(&*store, &id).await;
    assert_consistent(&s);
    assert_eq!(s.reserved, a(0));
    let usage = store.usage(&id, 100).await.unwrap();
    let costs: u128 = usage
        .iter()
        .map(|record| serde_json::from_slice::<serde_json::Value>(record).unwrap()["cost"].as_u64().unwrap() as u128)
        .sum();
    // The history and the balance agree, and neither exceeds the deposit.
    assert_eq!(a(costs), s.spent);
    assert!(s.spent <= a(100), "{s:?}");
    assert_eq!(usage.len() as u64, s.units);
}
