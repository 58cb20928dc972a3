//! The suite's concurrent tests: they run on a multi-thread runtime and race tasks over one
//! channel.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Barrier, oneshot};
use tokio::task::{JoinHandle, JoinSet, yield_now};
use tokio::time::{sleep, timeout};
use tollgate::Amount;
use tollgate::store::{
    ChannelStore, Reservation,
    StoreErrorKind::{Exists, Insufficient},
};

use super::{WAIT, a, assert_consistent, channel_id, opened, reserve, state};

/// Runs `future` on another task, giving up after [`WAIT`].
fn spawn_timed<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
    tokio::spawn(async move { timeout(WAIT, future).await.expect("timed out: a hang") })
}

pub async fn racing_opens_agree<S: ChannelStore>(store: S) {
    const OPENERS: u128 = 16;
    let store = Arc::new(store);
    // The race is narrow, so run it on many channels.
    for _ in 0..50 {
        let id = channel_id();
        let barrier = Arc::new(Barrier::new(OPENERS as usize));
        let mut tasks = JoinSet::new();
        for accepted in 1..=OPENERS {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                store.open(&id, a(accepted), a(100)).await.unwrap()
            });
        }
        let mut seen = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            seen.push(joined.unwrap());
        }
        // One open wins; the others return its channel.
        let winner = state(&*store, &id).await;
        assert!(seen.iter().all(|s| *s == winner), "{winner:?} vs {seen:?}");
    }
}

pub async fn racing_creates_have_one_winner<S: ChannelStore>(store: S) {
    const CLAIMERS: u128 = 16;
    let store = Arc::new(store);
    for _ in 0..50 {
        let id = channel_id();
        let barrier = Arc::new(Barrier::new(CLAIMERS as usize));
        let mut tasks = JoinSet::new();
        for accepted in 1..=CLAIMERS {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                (accepted, store.create(&id, a(accepted), a(100)).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (accepted, Ok(created)) => winners.push((accepted, created)),
                (_, Err(e)) => assert_eq!(e.kind(), &Exists, "a losing create fails with Exists: {e}"),
            }
        }
        // Exactly one create wins, and the channel is the winner's.
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let (accepted, created) = winners.remove(0);
        assert_eq!(created.accepted, a(accepted));
        assert_eq!(state(&*store, &id).await, created);
    }
}

pub async fn changed_wakes_when_accept_lands<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = opened(&*store, 10, 100).await;
    let seen = state(&*store, &id).await.version;
    let waiter = spawn_timed({
        let (store, id) = (store.clone(), id.clone());
        async move { store.changed(&id, seen).await }
    });
    sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "changed resolved before anything changed");
    let accepted = spawn_timed({
        let (store, id) = (store.clone(), id.clone());
        async move { store.accept(&id, a(30), a(100)).await }
    });
    let accepted = accepted.await.unwrap().unwrap();
    let woke = waiter.await.unwrap().unwrap();
    assert_eq!(woke.accepted, a(30));
    assert!(woke.version >= accepted.version && woke.version > seen);
}

pub async fn changed_wakes_on_release_and_finalize<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = opened(&*store, 10, 100).await;
    let r = reserve(&*store, &id, 10, 10).await;
    let wait_from = |seen: u64| {
        let (store, id) = (store.clone(), id.clone());
        spawn_timed(async move { store.changed(&id, seen).await })
    };
    // A paused stream waits for headroom; a release frees it.
    let waiter = wait_from(state(&*store, &id).await.version);
    yield_now().await;
    store.release(&r, a(0), 0).await.unwrap();
    let woke = waiter.await.unwrap().unwrap();
    assert_eq!((woke.reserved, woke.available()), (Amount::ZERO, a(10)));
    let waiter = wait_from(woke.version);
    yield_now().await;
    store.finalize(&id).await.unwrap();
    assert!(waiter.await.unwrap().unwrap().finalized);
}

pub async fn changed_never_misses_a_racing_change<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = opened(&*store, 0, 1000).await;
    for voucher in 1..=200 {
        let seen = state(&*store, &id).await.version;
        let waiter = spawn_timed({
            let (store, id) = (store.clone(), id.clone());
            async move { store.changed(&id, seen).await }
        });
        let (s, i) = (store.clone(), id.clone());
        tokio::spawn(async move { s.accept(&i, a(voucher), a(1000)).await.unwrap() });
        let woke = waiter.await.expect("a change racing with `changed` was missed").unwrap();
        assert!(woke.version > seen);
    }
    assert_eq!(state(&*store, &id).await.accepted, a(200));
}

pub async fn racing_reservations_never_overspend<S: ChannelStore>(store: S) {
    const TASKS: u64 = 32;
    const ROUNDS: u64 = 50;
    // Even rounds use their whole reservation (at least 1), and there are more of them
    // than the channel holds, so the channel runs dry mid-race.
    const ACCEPTED: u128 = 500;
    let store = Arc::new(store);
    let id = opened(&*store, ACCEPTED, ACCEPTED).await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let (mut used_total, mut ids, mut refused) = (0, Vec::new(), 0);
            for round in 0..ROUNDS {
                let r = match store.reserve(&id, a(1), a(10)).await {
                    Ok(r) => r,
                    Err(e) => {
                        assert!(matches!(e.kind(), Insufficient { .. }), "{e}");
                        refused += 1;
                        yield_now().await;
                        continue;
                    }
                };
                assert!(a(1) <= r.amount && r.amount <= a(10), "{r:?}");
                let used = if (task + round) % 2 == 0 { r.amount.get() } else { r.amount.get() / 2 };
                yield_now().await;
                assert_consistent(&store.commit(&r, a(used / 2), 1).await.unwrap());
                yield_now().await;
                assert_consistent(&store.release(&r, a(used), 2).await.unwrap());
                used_total += used;
                ids.push(r.id);
            }
            (used_total, ids, refused)
        });
    }
    let (mut used, mut ids, mut granted, mut refused) = (0, HashSet::new(), 0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (task_used, task_ids, task_refused) = joined.unwrap();
        used += task_used;
        granted += task_ids.len();
        ids.extend(task_ids);
        refused += task_refused;
    }
    assert_eq!(ids.len(), granted, "reservation ids must be unique");
    assert!(refused > 0, "the channel never ran dry, so nothing raced for its last cents");
    let end = state(&*store, &id).await;
    assert_consistent(&end);
    assert_eq!((end.spent, end.reserved), (a(used), Amount::ZERO));
    assert_eq!(end.units, 2 * granted as u64);
}

pub async fn racing_accept_and_reserve<S: ChannelStore>(store: S) {
    const ACCEPTERS: u128 = 4;
    const VOUCHERS: u128 = 200;
    const SPENDERS: usize = 16;
    let store = Arc::new(store);
    let id = opened(&*store, 0, 10_000).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut spenders = JoinSet::new();
    for _ in 0..SPENDERS {
        let (store, id, done) = (store.clone(), id.clone(), done.clone());
        spenders.spawn(async move {
            let mut spent = 0;
            loop {
                // Read before reserving: a refusal after the last accept is final, as
                // reservations are used in full and free nothing.
                let finished = done.load(Ordering::SeqCst);
                match store.reserve(&id, a(1), a(7)).await {
                    Ok(r) => {
                        yield_now().await;
                        assert_consistent(&store.release(&r, r.amount, 1).await.unwrap());
                        spent += r.amount.get();
                    }
                    Err(e) if matches!(e.kind(), Insufficient { .. }) && finished => return spent,
                    Err(e) if matches!(e.kind(), Insufficient { .. }) => yield_now().await,
                    Err(e) => panic!("reserve failed: {e}"),
                }
            }
        });
    }
    let mut accepters = JoinSet::new();
    for first in 0..ACCEPTERS {
        let (store, id) = (store.clone(), id.clone());
        accepters.spawn(async move {
            // Each accepter sends every fourth voucher, so they arrive interleaved.
            for n in (first..VOUCHERS).step_by(ACCEPTERS as usize) {
                let s = store.accept(&id, a((n + 1) * 10), a(10_000)).await.unwrap();
                assert!(s.accepted >= a((n + 1) * 10));
                assert_consistent(&s);
                yield_now().await;
            }
        });
    }
    while let Some(joined) = accepters.join_next().await {
        joined.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let mut spent = 0;
    while let Some(joined) = timeout(WAIT, spenders.join_next()).await.expect("spenders hang") {
        spent += joined.unwrap();
    }
    let end = state(&*store, &id).await;
    assert_eq!(end.accepted, a(VOUCHERS * 10));
    assert_eq!((end.spent, end.reserved), (a(spent), Amount::ZERO));
    assert_eq!(end.spent, end.accepted, "every accepted cent was spent exactly once");
}

pub async fn concurrent_releases_count_once<S: ChannelStore>(store: S) {
    const RESERVATIONS: usize = 20;
    const RACERS: usize = 4;
    let store = Arc::new(store);
    let id = opened(&*store, 100, 100).await;
    let barrier = Arc::new(Barrier::new(RESERVATIONS * RACERS));
    let mut tasks = JoinSet::new();
    for _ in 0..RESERVATIONS {
        let r = reserve(&*store, &id, 5, 5).await;
        for _ in 0..RACERS {
            let (store, r, barrier) = (store.clone(), r.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                assert_consistent(&store.release(&r, a(3), 1).await.unwrap());
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let end = state(&*store, &id).await;
    let totals = (end.spent, end.reserved, end.units, end.available());
    assert_eq!(totals, (a(60), Amount::ZERO, RESERVATIONS as u64, a(40)));
}

/// The reservation a task took before it died, released by two cleanups at once (a drop
/// guard and a sweeper, say) with `used`.
async fn release_twice_at_once<S: ChannelStore>(store: &Arc<S>, r: &Reservation, used: u128) {
    let release = move |store: Arc<S>, r: Reservation| async move { store.release(&r, a(used), 2).await.unwrap() };
    let first = tokio::spawn(release(store.clone(), r.clone()));
    let second = tokio::spawn(release(store.clone(), r.clone()));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.spent, second.spent);
}

pub async fn a_panicked_holders_reservation_is_released_once<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = opened(&*store, 100, 100).await;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = reserve(&*store, &id, 40, 40).await;
            store.commit(&r, a(10), 1).await.unwrap();
            tx.send(r).unwrap();
            panic!("the handler panicked mid-stream (expected by the test)");
        }
    });
    let r = rx.await.unwrap();
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(state(&*store, &id).await.reserved, a(30), "nobody released it yet");
    release_twice_at_once(&store, &r, 10).await;
    let end = state(&*store, &id).await;
    assert_eq!((end.spent, end.reserved, end.units, end.available()), (a(10), Amount::ZERO, 2, a(90)));
}

pub async fn an_aborted_holders_reservation_is_released_once<S: ChannelStore>(store: S) {
    let store = Arc::new(store);
    let id = opened(&*store, 100, 100).await;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move {
            let r = reserve(&*store, &id, 40, 40).await;
            store.commit(&r, a(15), 1).await.unwrap();
            tx.send(r).unwrap();
            std::future::pending::<()>().await;
        }
    });
    let r = rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    release_twice_at_once(&store, &r, 25).await;
    let end = state(&*store, &id).await;
    assert_eq!((end.spent, end.reserved, end.units, end.available()), (a(25), Amount::ZERO, 2, a(75)));
}
