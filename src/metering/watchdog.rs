//! The wall-clock deadline of a paused stream.
//!
//! A paused body only runs when its client polls it, and a client that stops reading
//! stops polling. So while a stream is paused its [`Account`] is held by a watchdog task
//! instead: at the deadline, or as soon as the channel is finalized, the task releases it
//! (committing what was delivered) unless the body took it back first. Whoever takes the
//! account out of the shared slot releases it, so the release happens exactly once.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::account::{Account, Release};
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError, StoreErrorKind};

type Slot<St> = Arc<Mutex<Held<St>>>;

/// The account while paused, and whether the watchdog has fired (it then holds no more).
struct Held<St: ChannelStore> {
    account: Option<Account<St>>,
    fired: bool,
}

/// Holds a paused stream's account until the body takes it back or the deadline passes.
pub(super) struct Watchdog<St: ChannelStore> {
    slot: Slot<St>,
    task: Option<JoinHandle<Result<ChannelState, StoreError>>>,
}

/// What the body finds when it comes back for its account.
pub(super) enum Taken<St: ChannelStore> {
    /// Still there: the stream may go on.
    Account(Account<St>),
    /// The watchdog released it; this is that release.
    Released(Release),
}

impl<St: ChannelStore> Watchdog<St> {
    /// Takes charge of `account`, paused on `channel` at state version `seen`, until
    /// `deadline`. Spawned on `runtime`.
    pub(super) fn start(
        account: Account<St>,
        channel: ChannelId,
        seen: u64,
        deadline: Instant,
        runtime: &Handle,
    ) -> Self {
        let store = account.store().clone();
        let slot: Slot<St> = Arc::new(Mutex::new(Held { account: Some(account), fired: false }));
        let watched = slot.clone();
        let task = runtime.spawn(async move {
            let mut seen = seen;
            // Every change wakes it (a voucher, another stream); only a finalize, a store
            // failure or the deadline ends the wait.
            while let Ok(Ok(state)) = timeout_at(deadline, store.changed(&channel, seen)).await {
                if state.finalized {
                    break;
                }
                seen = state.version;
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
        Watchdog { slot, task: Some(task) }
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
        None
    }

    /// Takes the account back, or the watchdog's release of it.
    pub(super) fn take(&mut self) -> Option<Taken<St>> {
        if let Some(account) = lock(&self.slot).account.take() {
            return Some(Taken::Account(account));
        }
        self.task.take().map(|task| Taken::Released(Release::task(task)))
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
