//! The wall-clock deadline of a paused stream, or of a payment that must settle in time.
//!
//! A body only runs when its client polls it, and a client that stops reading stops
//! polling. So while a stream is paused (or, for a grant that must settle by a deadline,
//! between any two polls) its [`Account`] is held by a watchdog task instead: at the
//! deadline, or as soon as a watched channel is finalized, the task releases it
//! (committing what was delivered) unless the body took it back first. Whoever takes the
//! account out of the shared slot releases it, so the release happens exactly once.
//!
//! Meanwhile the watchdog keeps the account's lease alive (a pause may outlast it): it
//! renews it every third of the lease with what was delivered before the pause. If the
//! store answers that the lease is gone, the pause ends as at the deadline.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::metering::account::{Account, LeaseLost, Release};
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError, StoreErrorKind};

type Outcome = Result<ChannelState, StoreError>;

type Slot<St> = Arc<Mutex<Held<St>>>;

/// The account while paused, and whether the watchdog has fired (it then holds no more).
struct Held<St: ChannelStore> {
    account: Option<Account<St>>,
    fired: bool,
    /// The task, woken when the account is put back: it keeps the lease from then on.
    task: Option<Waker>,
}

/// Holds a paused stream's account until the body takes it back or the deadline passes.
pub(super) struct Watchdog<St: ChannelStore> {
    slot: Slot<St>,
    task: Option<JoinHandle<Outcome>>,
    /// The task's outcome, once [`poll_fired`](Watchdog::poll_fired) saw it end.
    fired: Option<Outcome>,
}

/// Why the watchdog's wait ended, or that it goes on.
enum Woke {
    /// The channel moved on (not closed): wait for the next change.
    Changed(u64),
    /// The deadline, a closed channel, a store failure, a lost lease: release.
    End,
}

/// What the body finds when it comes back for its account.
// Moved out once per pause and matched at once; with `tracing` and `metrics` the account
// carries its span and labels, which boxing would allocate for on every resume.
#[allow(clippy::large_enum_variant)]
pub(super) enum Taken<St: ChannelStore> {
    /// Still there: the stream may go on.
    Account(Account<St>),
    /// The watchdog released it; this is that release.
    Released(Release),
}

impl<St: ChannelStore> Watchdog<St> {
    /// Takes charge of `account` until `deadline`, watching `channel` (paused on it at state
    /// version `seen`) for a finalize if given. Spawned on `runtime`.
    pub(super) fn start(
        account: Account<St>,
        watched_channel: Option<(ChannelId, u64)>,
        deadline: Instant,
        runtime: &Handle,
    ) -> Self {
        let store = account.store().clone();
        let slot: Slot<St> = Arc::new(Mutex::new(Held { account: Some(account), fired: false, task: None }));
        let watched = slot.clone();
        let task = runtime.spawn(async move {
            let mut deadline = pin!(sleep_until(deadline));
            let (channel, mut seen) = watched_channel.unzip();
            // Every change wakes it (a voucher, another stream); only a finalize, a store
            // failure, a lost lease or the deadline ends the wait.
            loop {
                let (store, channel) = (&store, channel.as_ref());
                let mut changed = pin!(async move {
                    match (channel, seen) {
                        (Some(channel), Some(seen)) => store.changed(channel, seen).await,
                        _ => std::future::pending().await,
                    }
                });
                let woke = poll_fn(|cx| {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::End);
                    }
                    if let Poll::Ready(changed) = changed.as_mut().poll(cx) {
                        return Poll::Ready(match changed {
                            Ok(state) if !state.finalized => Woke::Changed(state.version),
                            _ => Woke::End,
                        });
                    }
                    // While the body has taken the account back, it keeps the lease itself;
                    // it wakes this task when it puts the account back (the lease's timer
                    // then wakes the body, which last polled it).
                    let mut held = lock(&watched);
                    if !held.task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                        held.task = Some(cx.waker().clone());
                    }
                    if let Some(account) = held.account.as_mut() {
                        if let Poll::Ready(Err(LeaseLost)) = account.poll_lease(cx) {
                            return Poll::Ready(Woke::End);
                        }
                    }
                    Poll::Pending
                })
                .await;
                match woke {
                    Woke::Changed(version) => seen = Some(version),
                    Woke::End => break,
                }
            }
            let account = {
                let mut held = lock(&watched);
                held.fired = true;
                held.account.take()
            };
            match account {
                Some(account) => account.release().await,
                // The body had it and releases it itself.
                None => Err(StoreError::new(StoreErrorKind::NotFound)),
            }
        });
        Watchdog { slot, task: Some(task), fired: None }
    }

    /// Hands the account back for another wait within the same pause; gives it back when
    /// the watchdog has already fired (the pause is over then).
    pub(super) fn put(&self, account: Account<St>) -> Option<Account<St>> {
        let mut held = lock(&self.slot);
        // Under the lock the task fires with: an account put back is never missed.
        if held.fired || held.account.is_some() {
            return Some(account);
        }
        held.account = Some(account);
        if let Some(task) = &held.task {
            task.wake_by_ref();
        }
        None
    }

    /// Takes the account back, or the watchdog's release of it.
    pub(super) fn take(&mut self) -> Option<Taken<St>> {
        if let Some(account) = lock(&self.slot).account.take() {
            return Some(Taken::Account(account));
        }
        if let Some(outcome) = self.fired.take() {
            return Some(Taken::Released(Release::done(outcome)));
        }
        self.task.take().map(|task| Taken::Released(Release::task(task)))
    }

    /// Ready once the watchdog's task has ended (it released the account, or found the
    /// body had it): the pause is over either way.
    pub(super) fn poll_fired(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.fired.is_some() {
            return Poll::Ready(());
        }
        let Some(task) = &mut self.task else { return Poll::Ready(()) };
        let joined = std::task::ready!(std::pin::Pin::new(task).poll(cx));
        self.task = None;
        self.fired =
            Some(joined.unwrap_or_else(|_| Err(StoreError::backend("the pause watchdog did not report back"))));
        Poll::Ready(())
    }
}

impl<St: ChannelStore> Drop for Watchdog<St> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // The body went away while paused: its account releases now, not at the deadline.
        let account = lock(&self.slot).account.take();
        drop(account);
    }
}

/// Nothing panics while holding the lock, so a poisoned one still holds a sound value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
