//! The conformance suite every [`ChannelStore`] backend runs.
//!
//! Each test is a generic `async fn` taking a fresh store; [`store_suite!`] turns them into
//! `#[tokio::test]`s for one backend. Channel ids are unique per test run, so a persistent
//! backend (Redis, PostgreSQL) can share one database between runs and tests.
//!
//! ```ignore
//! mod common;
//! common::store_suite!(
//!     // A fresh store; the expressions run inside each async test, so they may await.
//!     make: MemoryStore::new(),
//!     // A store whose leases lapse after `common::SHORT_LEASE`, for the lease tests.
//!     short_lease: MemoryStore::new().with_lease(common::SHORT_LEASE),
//!     // A second handle on the same store, as a second instance would hold.
//!     twin: |store: &MemoryStore| std::future::ready(store.clone()),
//! );
//! ```
#![allow(dead_code)] // test binaries without a store use none of this

mod lapses;
mod prepaid;
mod races;
mod shared;

#[allow(unused_imports)] // used through `store_suite!` only
pub use lapses::*;
#[allow(unused_imports)] // used through `store_suite!` only
pub use prepaid::*;
#[allow(unused_imports)] // used through `store_suite!` only
pub use races::*;
#[allow(unused_imports)]
pub use shared::*;

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::timeout;
use tollgate::Amount;
use tollgate::store::{
    AskId, ChannelId, ChannelState, ChannelStore, Reservation, ReservationId, StoreError, StoreErrorKind,
};

use StoreErrorKind::{Exists, Finalized, Insufficient, Invalid, NotFound};

/// Expands to one `#[tokio::test]` per suite test, each running against a store built by
/// `$make` (an expression evaluated inside the async test, so it may `.await`). Invoke it
/// at the root of a test crate that declares `mod common;`.
macro_rules! store_suite {
    (make: $make:expr, short_lease: $short:expr, twin: $twin:expr $(,)?) => {
        $crate::common::store_suite!(@leases $short;
            a_dead_holders_lease_is_reclaimed_with_its_renewed_usage,
            a_lapsed_lease_keeps_the_larger_of_committed_and_renewed,
            renewing_keeps_a_lease_alive,
            a_reclaimed_reservation_leaves_the_usage_record_it_was_reserved_with,
        );
        $crate::common::store_suite!(@twins $make, $short, $twin;
            two_instances_racing_never_overspend,
            two_instances_crediting_one_deposit_credit_once,
            a_change_on_one_instance_wakes_the_other;
            a_lease_of_a_dead_instance_is_reclaimed_by_the_other,
        );
        $crate::common::store_suite!(@tests $make;
            current_thread:
                open_creates_a_channel,
                open_is_idempotent_and_does_not_overwrite,
                open_refuses_accepted_above_deposit,
                create_claims_an_id_once,
                accept_is_monotonic,
                accept_above_the_deposit_is_refused,
                accept_on_unknown_or_finalized_channel_is_refused,
                reserve_grants_between_min_and_max,
                reserve_insufficient_reports_available_and_changes_nothing,
                reserve_refuses_bad_requests,
                extend_grows_a_reservation,
                commit_is_cumulative_and_idempotent,
                commit_above_the_reservation_is_refused,
                release_frees_the_rest_once,
                release_keeps_an_earlier_commit,
                release_above_the_reservation_is_refused,
                unknown_reservations,
                finalize_blocks_reserve_and_accept_but_allows_release,
                asks_are_kept_highest_first_until_they_lapse,
                a_withdrawn_ask_no_longer_counts,
                asking_is_no_payment_and_wakes_no_one,
                renew_checks_its_figure_and_wakes_no_one,
                shelves_keep_replace_list_and_discard,
                a_lock_has_one_holder_until_it_lapses_or_is_given_up,
                changed_does_not_miss_an_earlier_change,
                credit_claims_a_reference_once,
                credit_on_a_finalized_channel_is_refused_and_claims_nothing,
                release_with_usage_debits_and_records_once,
                a_lapsing_claim_is_created_like_any_other,
                a_lapsed_claim_is_swept_with_everything_kept_for_it,
                creating_a_lapsed_id_sweeps_it_first,
                live_claims_and_plain_channels_survive_a_sweep,
                claims_lapse_when_their_date_passes_and_are_swept_in_batches;
            multi_thread:
                racing_opens_agree,
                racing_creates_have_one_winner,
                changed_wakes_when_accept_lands,
                changed_wakes_on_release_and_finalize,
                changed_never_misses_a_racing_change,
                racing_reservations_never_overspend,
                racing_accept_and_reserve,
                concurrent_releases_count_once,
                a_panicked_holders_reservation_is_released_once,
                an_aborted_holders_reservation_is_released_once,
                racing_credits_of_one_reference_credit_once,
                sixteen_reservations_on_a_small_balance_never_overspend,
                racing_claims_of_one_lapsing_id_have_one_winner,
        );
    };
    (@leases $short:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::common::store_suite::$test($short).await;
            }
        )*
    };
    (@twins $make:expr, $short:expr, $twin:expr; $($race:ident),* ; $($lease:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $race() {
                $crate::common::store_suite::$race($make, $twin).await;
            }
        )*
        $(
            #[tokio::test]
            async fn $lease() {
                $crate::common::store_suite::$lease($short, $twin).await;
            }
        )*
    };
    (@tests $make:expr; current_thread: $($test:ident),* ; multi_thread: $($race:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::common::store_suite::$test($make).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $race() {
                $crate::common::store_suite::$race($make).await;
            }
        )*
    };
}
pub(crate) use store_suite;

/// The lease of the stores the lease tests run on: short, so they do not wait long.
pub const SHORT_LEASE: Duration = Duration::from_millis(600);

/// How long a test waits for something that should happen before it calls it a hang.
pub const WAIT: Duration = Duration::from_secs(10);

/// A channel id no other test (or earlier run against the same database) uses.
pub fn channel_id() -> ChannelId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ChannelId::new(format!("suite-{:x}-{nanos:x}-{n}", std::process::id()))
}

pub fn a(n: u128) -> Amount {
    Amount::new(n)
}

pub async fn opened<S: ChannelStore>(store: &S, accepted: u128, deposit: u128) -> ChannelId {
    let id = channel_id();
    store.open(&id, a(accepted), a(deposit)).await.expect("open");
    id
}

pub async fn state<S: ChannelStore>(store: &S, id: &ChannelId) -> ChannelState {
    store.load(id).await.expect("load").expect("the channel exists")
}

pub async fn reserve<S: ChannelStore>(store: &S, id: &ChannelId, min: u128, max: u128) -> Reservation {
    store.reserve(id, a(min), a(max)).await.expect("reserve")
}

#[track_caller]
fn kind<T: Debug>(result: Result<T, StoreError>) -> StoreErrorKind {
    result.expect_err("expected a store error").kind().clone()
}

/// `available ≥ 0` and `accepted ≤ deposit`.
#[track_caller]
pub fn assert_consistent(state: &ChannelState) {
    assert!(state.accepted <= state.deposit, "accepted above the deposit: {state:?}");
    let held = state.spent.checked_add(state.reserved).expect("spent + reserved overflows");
    assert!(held <= state.accepted, "overspent: {state:?}");
}

pub async fn open_creates_a_channel<S: ChannelStore>(store: S) {
    let id = channel_id();
    assert_eq!(store.load(&id).await.unwrap(), None);
    let s = store.open(&id, a(10), a(100)).await.unwrap();
    let fields = (s.accepted, s.deposit, s.spent, s.reserved, s.units, s.finalized);
    assert_eq!(fields, (a(10), a(100), Amount::ZERO, Amount::ZERO, 0, false));
    assert_eq!(s.available(), a(10));
    assert_eq!(state(&store, &id).await, s);
}

pub async fn open_is_idempotent_and_does_not_overwrite<S: ChannelStore>(store: S) {
    let id = opened(&store, 10, 100).await;
    let r = reserve(&store, &id, 4, 4).await;
    let before = state(&store, &id).await;
    assert_eq!(store.open(&id, a(50), a(500)).await.unwrap(), before);
    assert_eq!(store.open(&id, a(10), a(100)).await.unwrap(), before);
    assert_eq!(state(&store, &id).await, before);
    // The reservation survived the second open.
    assert_eq!(store.release(&r, a(4), 1).await.unwrap().spent, a(4));
}

pub async fn open_refuses_accepted_above_deposit<S: ChannelStore>(store: S) {
    let id = channel_id();
    assert_eq!(kind(store.open(&id, a(101), a(100)).await), Invalid);
    assert_eq!(store.load(&id).await.unwrap(), None);
}

pub async fn create_claims_an_id_once<S: ChannelStore>(store: S) {
    let id = channel_id();
    let created = store.create(&id, a(10), a(100)).await.unwrap();
    let fields = (created.accepted, created.deposit, created.spent, created.reserved, created.units, created.finalized);
    assert_eq!(fields, (a(10), a(100), Amount::ZERO, Amount::ZERO, 0, false));
    assert_eq!(state(&store, &id).await, created);
    // A second create of the same id is refused and changes nothing, whatever it asks for.
    assert_eq!(kind(store.create(&id, a(10), a(100)).await), Exists);
    assert_eq!(kind(store.create(&id, a(50), a(500)).await), Exists);
    assert_eq!(state(&store, &id).await, created);
    // Nor does a create of an id that `open` made, or of a finalized channel.
    let opened = opened(&store, 5, 5).await;
    let closed = store.finalize(&opened).await.unwrap();
    assert_eq!(kind(store.create(&opened, a(1), a(1)).await), Exists);
    assert_eq!(state(&store, &opened).await, closed);
    // An invalid create claims nothing.
    let fresh = channel_id();
    assert_eq!(kind(store.create(&fresh, a(101), a(100)).await), Invalid);
    assert_eq!(store.load(&fresh).await.unwrap(), None);
    assert_eq!(store.create(&fresh, a(0), a(100)).await.unwrap().deposit, a(100));
}

pub async fn accept_is_monotonic<S: ChannelStore>(store: S) {
    let id = opened(&store, 10, 100).await;
    let start = state(&store, &id).await;
    let raised = store.accept(&id, a(30), a(100)).await.unwrap();
    assert_eq!(raised.accepted, a(30));
    assert!(raised.version > start.version);
    // A lower voucher (delivered out of order) changes nothing, an equal one is a retry:
    // not even the version moves.
    assert_eq!(store.accept(&id, a(20), a(100)).await.unwrap(), raised);
    assert_eq!(store.accept(&id, a(30), a(100)).await.unwrap(), raised);
    // The deposit only rises.
    let topped = store.accept(&id, a(30), a(150)).await.unwrap();
    assert_eq!((topped.accepted, topped.deposit), (a(30), a(150)));
    assert!(topped.version > raised.version);
    assert_eq!(store.accept(&id, a(30), a(120)).await.unwrap(), topped);
    assert_eq!(state(&store, &id).await, topped);
}

pub async fn accept_above_the_deposit_is_refused<S: ChannelStore>(store: S) {
    let id = opened(&store, 10, 100).await;
    let before = state(&store, &id).await;
    assert_eq!(kind(store.accept(&id, a(101), a(100)).await), Invalid);
    // A lower deposit in the call does not lower the ceiling, nor lift the voucher.
    assert_eq!(kind(store.accept(&id, a(101), a(50)).await), Invalid);
    assert_eq!(state(&store, &id).await, before);
    // Raising the deposit in the same call lets it through.
    let raised = store.accept(&id, a(150), a(200)).await.unwrap();
    assert_eq!((raised.accepted, raised.deposit), (a(150), a(200)));
}

pub async fn accept_on_unknown_or_finalized_channel_is_refused<S: ChannelStore>(store: S) {
    assert_eq!(kind(store.accept(&channel_id(), a(1), a(1)).await), NotFound);
    let id = opened(&store, 10, 100).await;
    let closed = store.finalize(&id).await.unwrap();
    assert!(closed.finalized);
    assert_eq!(kind(store.accept(&id, a(20), a(100)).await), Finalized);
    assert_eq!(state(&store, &id).await, closed);
}

pub async fn reserve_grants_between_min_and_max<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let first = reserve(&store, &id, 10, 40).await;
    assert_eq!((&first.channel, first.amount), (&id, a(40)));
    // Less than `max` is left: the reservation takes what there is.
    let second = reserve(&store, &id, 10, 100).await;
    assert_eq!(second.amount, a(60));
    assert_ne!(first.id, second.id);
    let s = state(&store, &id).await;
    assert_eq!((s.reserved, s.spent, s.available()), (a(100), Amount::ZERO, Amount::ZERO));
    let empty = store.reserve(&id, a(1), a(5)).await;
    assert_eq!(kind(empty), Insufficient { available: Amount::ZERO });
}

pub async fn reserve_insufficient_reports_available_and_changes_nothing<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    reserve(&store, &id, 70, 70).await;
    let before = state(&store, &id).await;
    let short = store.reserve(&id, a(50), a(80)).await;
    assert_eq!(kind(short), Insufficient { available: a(30) });
    assert_eq!(state(&store, &id).await, before);
    assert_eq!(reserve(&store, &id, 30, 80).await.amount, a(30));
}

pub async fn reserve_refuses_bad_requests<S: ChannelStore>(store: S) {
    assert_eq!(kind(store.reserve(&channel_id(), a(1), a(1)).await), NotFound);
    let id = opened(&store, 100, 1000).await;
    let before = state(&store, &id).await;
    assert_eq!(kind(store.reserve(&id, a(10), a(5)).await), Invalid);
    assert_eq!(state(&store, &id).await, before);
}

pub async fn extend_grows_a_reservation<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 10, 10).await;
    let grown = store.extend(&r, a(5), a(20)).await.unwrap();
    assert_eq!((grown.id, &grown.channel, grown.amount), (r.id, &id, a(30)));
    assert_eq!(state(&store, &id).await.reserved, a(30));
    reserve(&store, &id, 50, 50).await;
    // Capped by what is available, refused below `min`.
    let capped = store.extend(&grown, a(1), a(100)).await.unwrap();
    assert_eq!(capped.amount, a(50));
    let before = state(&store, &id).await;
    assert_eq!(kind(store.extend(&capped, a(1), a(1)).await), Insufficient { available: Amount::ZERO });
    assert_eq!(kind(store.extend(&capped, a(2), a(1)).await), Invalid);
    assert_eq!(state(&store, &id).await, before);
    // The store's amount counts, not the caller's stale copy (`r` still says 10).
    assert_eq!(store.commit(&r, a(45), 1).await.unwrap().spent, a(45));
    store.release(&r, a(45), 1).await.unwrap();
    assert_eq!(kind(store.extend(&r, a(0), a(1)).await), NotFound);
}

pub async fn commit_is_cumulative_and_idempotent<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 50, 50).await;
    let first = store.commit(&r, a(20), 2).await.unwrap();
    let totals = |s: &ChannelState| (s.spent, s.reserved, s.units, s.available());
    assert_eq!(totals(&first), (a(20), a(30), 2, a(50)));
    // A replayed or reordered (lower) commit changes nothing, not even the version.
    assert_eq!(store.commit(&r, a(20), 2).await.unwrap(), first);
    assert_eq!(store.commit(&r, a(15), 1).await.unwrap(), first);
    let second = store.commit(&r, a(35), 5).await.unwrap();
    assert_eq!(totals(&second), (a(35), a(15), 5, a(50)));
    assert!(second.version > first.version);
    // Units and amount move on their own.
    let units = store.commit(&r, a(35), 7).await.unwrap();
    assert_eq!(totals(&units), (a(35), a(15), 7, a(50)));
    assert_eq!(state(&store, &id).await, units);
}

pub async fn commit_above_the_reservation_is_refused<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 50, 50).await;
    // Another reservation, so the channel's `reserved` could absorb an overrun.
    reserve(&store, &id, 30, 30).await;
    store.commit(&r, a(10), 1).await.unwrap();
    let before = state(&store, &id).await;
    assert_eq!(kind(store.commit(&r, a(51), 9).await), Invalid);
    assert_eq!(state(&store, &id).await, before);
    assert_eq!(store.commit(&r, a(50), 9).await.unwrap().spent, a(50));
}

pub async fn release_frees_the_rest_once<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 50, 50).await;
    let released = store.release(&r, a(20), 3).await.unwrap();
    let totals = (released.spent, released.reserved, released.units, released.available());
    assert_eq!(totals, (a(20), Amount::ZERO, 3, a(80)));
    // A second release, with the same or other totals, changes nothing.
    assert_eq!(store.release(&r, a(20), 3).await.unwrap(), released);
    assert_eq!(store.release(&r, a(45), 9).await.unwrap(), released);
    assert_eq!(state(&store, &id).await, released);
}

pub async fn release_keeps_an_earlier_commit<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 50, 50).await;
    store.commit(&r, a(30), 3).await.unwrap();
    let released = store.release(&r, a(10), 1).await.unwrap();
    assert_eq!((released.spent, released.reserved, released.units), (a(30), Amount::ZERO, 3));
    // A release above the commit commits the difference.
    let r = reserve(&store, &id, 20, 20).await;
    store.commit(&r, a(5), 1).await.unwrap();
    let released = store.release(&r, a(15), 2).await.unwrap();
    assert_eq!((released.spent, released.reserved, released.units), (a(45), Amount::ZERO, 5));
}

pub async fn release_above_the_reservation_is_refused<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 50, 50).await;
    reserve(&store, &id, 30, 30).await;
    let before = state(&store, &id).await;
    assert_eq!(kind(store.release(&r, a(51), 1).await), Invalid);
    assert_eq!(state(&store, &id).await, before);
    // Nothing was released: the reservation is still there to release properly.
    let released = store.release(&r, a(50), 1).await.unwrap();
    assert_eq!((released.spent, released.reserved), (a(50), a(30)));
}

pub async fn unknown_reservations<S: ChannelStore>(store: S) {
    let id = opened(&store, 100, 1000).await;
    let stranger = Reservation { channel: id.clone(), id: ReservationId(u64::MAX), amount: a(10) };
    assert_eq!(kind(store.commit(&stranger, a(1), 1).await), NotFound);
    assert_eq!(kind(store.extend(&stranger, a(1), a(1)).await), NotFound);
    let before = state(&store, &id).await;
    assert_eq!(store.release(&stranger, a(1), 1).await.unwrap(), before);
    assert_eq!(state(&store, &id).await, before);
    let lost = Reservation { channel: channel_id(), ..stranger };
    assert_eq!(kind(store.release(&lost, a(0), 0).await), NotFound);
}

pub async fn finalize_blocks_reserve_and_accept_but_allows_release<S: ChannelStore>(store: S) {
    assert_eq!(kind(store.finalize(&channel_id()).await), NotFound);
    let id = opened(&store, 100, 1000).await;
    let r = reserve(&store, &id, 40, 40).await;
    let closed = store.finalize(&id).await.unwrap();
    assert!(closed.finalized);
    assert_eq!(closed.reserved, a(40));
    assert_eq!(store.finalize(&id).await.unwrap(), closed, "finalize is idempotent");
    assert_eq!(kind(store.reserve(&id, a(1), a(1)).await), Finalized);
    assert_eq!(kind(store.accept(&id, a(200), a(1000)).await), Finalized);
    assert_eq!(kind(store.extend(&r, a(1), a(1)).await), Finalized);
    assert_eq!(store.open(&id, a(1), a(1)).await.unwrap(), closed, "open does not reopen");
    // A stream that was running when the channel closed still settles.
    assert_eq!(store.commit(&r, a(10), 1).await.unwrap().spent, a(10));
    let released = store.release(&r, a(25), 2).await.unwrap();
    let totals = (released.spent, released.reserved, released.units, released.finalized);
    assert_eq!(totals, (a(25), Amount::ZERO, 2, true));
}

pub async fn asks_are_kept_highest_first_until_they_lapse<S: ChannelStore>(store: S) {
    let (first, second) = (AskId::new(), AskId::new());
    assert_eq!(kind(store.ask(&channel_id(), first, a(1), WAIT).await), NotFound);
    let id = opened(&store, 10, 1000).await;
    assert_eq!(state(&store, &id).await.asked, Amount::ZERO, "no ask yet");
    assert_eq!(store.ask(&id, first, a(300), WAIT).await.unwrap().asked, a(300));
    assert_eq!(store.ask(&id, second, a(200), WAIT).await.unwrap().asked, a(300), "the highest live ask counts");
    assert_eq!(state(&store, &id).await.asked, a(300));
    // A short ask that lapses: once past it, no ask is live.
    let brief = opened(&store, 10, 1000).await;
    store.ask(&brief, first, a(500), Duration::from_millis(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&store, &brief).await.asked, Amount::ZERO, "the ask lapsed");
    store.finalize(&id).await.unwrap();
    assert_eq!(kind(store.ask(&id, first, a(400), WAIT).await), Finalized);
}

pub async fn a_withdrawn_ask_no_longer_counts<S: ChannelStore>(store: S) {
    let (first, second) = (AskId::new(), AskId::new());
    let id = opened(&store, 10, 1000).await;
    store.ask(&id, first, a(300), WAIT).await.unwrap();
    store.ask(&id, second, a(200), WAIT).await.unwrap();
    assert_eq!(store.ask(&id, first, a(250), WAIT).await.unwrap().asked, a(250), "an asker's new ask replaces its own");
    assert_eq!(store.withdraw_ask(&id, first).await.unwrap().asked, a(200), "the other asker's ask stays");
    assert_eq!(store.withdraw_ask(&id, first).await.unwrap().asked, a(200), "withdrawing twice changes nothing");
    assert_eq!(store.withdraw_ask(&id, second).await.unwrap().asked, Amount::ZERO);
    assert_eq!(kind(store.withdraw_ask(&channel_id(), first).await), NotFound);
}

pub async fn asking_is_no_payment_and_wakes_no_one<S: ChannelStore>(store: S) {
    let id = opened(&store, 10, 1000).await;
    let before = state(&store, &id).await;
    let asker = AskId::new();
    let asked = store.ask(&id, asker, a(700), WAIT).await.unwrap();
    assert_eq!(asked.version, before.version, "an ask does not bump the version");
    assert_eq!((asked.accepted, asked.spent, asked.reserved), (before.accepted, before.spent, before.reserved));
    let withdrawn = store.withdraw_ask(&id, asker).await.unwrap();
    assert_eq!(withdrawn.version, before.version, "nor does withdrawing it");
    let idle = timeout(Duration::from_millis(100), store.changed(&id, before.version)).await;
    assert!(idle.is_err(), "an ask woke a waiter: {idle:?}");
}

pub async fn changed_does_not_miss_an_earlier_change<S: ChannelStore>(store: S) {
    assert_eq!(kind(store.changed(&channel_id(), 0).await), NotFound);
    let id = opened(&store, 10, 100).await;
    let seen = state(&store, &id).await.version;
    let after = store.accept(&id, a(20), a(100)).await.unwrap();
    // The change landed before the call: it resolves at once.
    let woke = timeout(WAIT, store.changed(&id, seen)).await.expect("missed a change").unwrap();
    assert_eq!((woke.accepted, woke.version), (a(20), after.version));
    // Nothing new since: it waits.
    let idle = timeout(Duration::from_millis(100), store.changed(&id, after.version)).await;
    assert!(idle.is_err(), "changed resolved with nothing new: {idle:?}");
}
