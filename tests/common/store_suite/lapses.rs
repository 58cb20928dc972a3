//! The suite's tests of lapsing channels ([`ChannelStore::create_lapsing`]): single use
//! while they are there, swept with everything kept for them once lapsed, and nothing else
//! swept.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::sleep;
use tollgate::store::{ChannelId, ChannelStore, StoreErrorKind};

use super::{a, channel_id, reserve, state};

const SETTLED: &str = "suite-settled";
const PENDING: &str = "suite-pending";

/// Long past: a claim created with it is swept by the next create.
fn lapsed() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// Far enough ahead that no test outlives it.
fn live() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

/// A fresh id with the characters a key scheme must escape.
fn awkward_id() -> ChannelId {
    ChannelId::new(format!("{}:{{tag}}%7D%", channel_id()))
}

/// Puts something on both suite shelves for `id`.
async fn shelve<S: ChannelStore>(store: &S, id: &ChannelId) {
    store.keep(id, SETTLED, a(7), Bytes::from_static(b"settled")).await.unwrap();
    store.keep(id, PENDING, a(9), Bytes::from_static(b"pending")).await.unwrap();
}

/// Whether `id` is still there, on a shelf or in a shelf's listing.
async fn remembered<S: ChannelStore>(store: &S, id: &ChannelId) -> bool {
    let mut remembered = store.load(id).await.unwrap().is_some();
    for shelf in [SETTLED, PENDING] {
        remembered |= !store.kept(id, shelf).await.unwrap().is_empty();
        remembered |= store.shelved(shelf).await.unwrap().contains(id);
    }
    remembered
}

/// One plain create, which sweeps.
async fn sweep<S: ChannelStore>(store: &S) {
    store.create(&channel_id(), a(0), a(0)).await.unwrap();
}

pub async fn a_lapsing_claim_is_created_like_any_other<S: ChannelStore>(store: S) {
    let id = channel_id();
    let refused = store.create_lapsing(&id, a(6), a(5), live()).await.unwrap_err();
    assert_eq!(refused.kind(), &StoreErrorKind::Invalid);
    assert_eq!(store.load(&id).await.unwrap(), None, "a refused claim creates nothing");

    let created = store.create_lapsing(&id, a(5), a(5), live()).await.unwrap();
    assert_eq!((created.accepted, created.deposit, created.spent), (a(5), a(5), a(0)));
    assert_eq!(state(&store, &id).await, created);
    for again in [store.create(&id, a(1), a(1)).await, store.create_lapsing(&id, a(1), a(1), live()).await] {
        assert_eq!(again.unwrap_err().kind(), &StoreErrorKind::Exists);
    }
    // It is a channel like any other while it is there.
    let r = reserve(&store, &id, 1, 5).await;
    assert_eq!(store.release(&r, a(3), 1).await.unwrap().spent, a(3));
}

pub async fn a_lapsed_claim_is_swept_with_everything_kept_for_it<S: ChannelStore>(store: S) {
    let id = awkward_id();
    store.create_lapsing(&id, a(10), a(10), lapsed()).await.unwrap();
    shelve(&store, &id).await;
    let r = store.reserve_recording(&id, a(1), a(4), Bytes::from_static(br#"{"path":"/x""#)).await.unwrap();
    store.release_with_usage(&r, a(4), 1, Bytes::from_static(br#"{"cost":"4"}"#)).await.unwrap();
    // Lapsed but not swept yet: still there, and still single use.
    assert!(remembered(&store, &id).await);
    assert_eq!(state(&store, &id).await.spent, a(4));

    sweep(&store).await;
    assert!(!remembered(&store, &id).await, "a swept claim leaves nothing behind");
    assert!(store.usage(&id, 10).await.unwrap().is_empty(), "its usage records go with it");

    // The id can be claimed afresh, and starts empty.
    let again = store.create_lapsing(&id, a(3), a(3), live()).await.unwrap();
    assert_eq!((again.accepted, again.spent, again.reserved), (a(3), a(0), a(0)));
    assert!(store.kept(&id, SETTLED).await.unwrap().is_empty());
}

pub async fn creating_a_lapsed_id_sweeps_it_first<S: ChannelStore>(store: S) {
    let id = awkward_id();
    store.create_lapsing(&id, a(10), a(10), lapsed()).await.unwrap();
    shelve(&store, &id).await;
    let fresh = store.create(&id, a(2), a(2)).await.unwrap();
    assert_eq!((fresh.accepted, fresh.spent), (a(2), a(0)));
    for shelf in [SETTLED, PENDING] {
        assert!(store.kept(&id, shelf).await.unwrap().is_empty(), "the lapsed claim's {shelf} is gone");
        assert!(!store.shelved(shelf).await.unwrap().contains(&id));
    }
    // Plain now: no later create sweeps it.
    sweep(&store).await;
    assert_eq!(state(&store, &id).await, fresh);
}

pub async fn live_claims_and_plain_channels_survive_a_sweep<S: ChannelStore>(store: S) {
    let (plain, opened, claim, gone) = (channel_id(), channel_id(), channel_id(), channel_id());
    store.create(&plain, a(1), a(1)).await.unwrap();
    store.open(&opened, a(2), a(2)).await.unwrap();
    store.create_lapsing(&claim, a(3), a(3), live()).await.unwrap();
    store.create_lapsing(&gone, a(4), a(4), lapsed()).await.unwrap();
    for id in [&plain, &opened, &claim, &gone] {
        shelve(&store, id).await;
    }
    sweep(&store).await;
    sweep(&store).await;
    assert!(!remembered(&store, &gone).await);
    for (id, accepted) in [(&plain, 1), (&opened, 2), (&claim, 3)] {
        assert_eq!(state(&store, id).await.accepted, a(accepted));
        for shelf in [SETTLED, PENDING] {
            assert_eq!(store.kept(id, shelf).await.unwrap().len(), 1, "{id}'s {shelf} survives");
            assert!(store.shelved(shelf).await.unwrap().contains(id));
        }
    }
}

pub async fn claims_lapse_when_their_date_passes_and_are_swept_in_batches<S: ChannelStore>(store: S) {
    let ids: Vec<ChannelId> = (0..70).map(|_| channel_id()).collect();
    let soon = SystemTime::now() + Duration::from_secs(1);
    for id in &ids {
        store.create_lapsing(id, a(1), a(1), soon).await.unwrap();
    }
    shelve(&store, &ids[0]).await;
    sleep(Duration::from_millis(1500)).await;
    // Each create sweeps a bounded batch, oldest first; a few creates sweep them all.
    for _ in 0..3 {
        sweep(&store).await;
    }
    assert!(!remembered(&store, &ids[0]).await);
    for id in &ids {
        assert_eq!(store.load(id).await.unwrap(), None, "{id} was left behind");
    }
}

pub async fn racing_claims_of_one_lapsing_id_have_one_winner<S: ChannelStore>(store: S) {
    const CLAIMERS: u128 = 8;
    let store = Arc::new(store);
    for round in 0..20 {
        let id = channel_id();
        // Half the rounds race over a lapsed claim of the id, which each racer sweeps.
        if round % 2 == 1 {
            store.create_lapsing(&id, a(50), a(50), lapsed()).await.unwrap();
        }
        let barrier = Arc::new(Barrier::new(CLAIMERS as usize));
        let mut tasks = JoinSet::new();
        for accepted in 1..=CLAIMERS {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                (accepted, store.create_lapsing(&id, a(accepted), a(100), live()).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (accepted, Ok(created)) => winners.push((accepted, created)),
                (_, Err(e)) => assert_eq!(e.kind(), &StoreErrorKind::Exists, "a losing claim fails with Exists: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let (accepted, created) = winners.remove(0);
        assert_eq!(created.accepted, a(accepted));
        assert_eq!(state(&*store, &id).await, created);
    }
}
