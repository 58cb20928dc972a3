//! [`SettleLock`]: one settler per channel across every instance sharing the store.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use alloy::primitives::B256;

use crate::store::{ChannelStore, LockHolder, StoreError};

/// How long a settlement or close holds its channel without renewing. Renewed every third
/// of it while the capture runs, so it only lapses when the holder died (or its store
/// stopped answering): another instance then takes over within this time.
const TTL: Duration = Duration::from_secs(30);

/// How often a waiting close asks for a busy lock again.
const RETRY: Duration = Duration::from_millis(50);

/// The store lock `settle:<channel>`, held by one settlement or close (a fresh holder per
/// attempt, so not even two tasks of one instance capture the same channel at once).
///
/// A holder checks it still has the lock right before it sends a transaction; losing it
/// means stopping without sending (the new holder decides). Released explicitly; a
/// holder that dies leaves it to lapse.
#[derive(Debug)]
pub(super) struct SettleLock<'a, St> {
    store: &'a St,
    name: String,
    holder: LockHolder,
}

impl<'a, St: ChannelStore> SettleLock<'a, St> {
    /// Takes the channel's lock, or `None` when another holder has it.
    pub(super) async fn take(store: &'a St, channel: B256) -> Result<Option<Self>, StoreError> {
        let lock = SettleLock { store, name: format!("settle:{channel:#x}"), holder: LockHolder::new() };
        Ok(lock.still_held().await?.then_some(lock))
    }

    /// Takes the channel's lock, waiting up to `patience` for another holder to finish.
    pub(super) async fn wait(store: &'a St, channel: B256, patience: Duration) -> Result<Option<Self>, StoreError> {
        let deadline = crate::clock::after(patience);
        loop {
            if let Some(lock) = Self::take(store, channel).await? {
                return Ok(Some(lock));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Renews the lock; `false` when it lapsed and another holder took it.
    pub(super) async fn still_held(&self) -> Result<bool, StoreError> {
        self.store.lock(&self.name, self.holder, TTL).await
    }

    /// Runs `work`, renewing the lock every third of its lifetime meanwhile. A renewal
    /// that fails does not stop `work` (it may be a transaction already sent); `work`
    /// checks [`still_held`](Self::still_held) before it sends anything.
    pub(super) async fn during<F: Future>(&self, work: F) -> F::Output {
        let mut work = pin!(work);
        loop {
            let renewal = pin!(async {
                tokio::time::sleep(TTL / 3).await;
                let _ = self.still_held().await;
            });
            if let Some(out) = first(work.as_mut(), renewal).await {
                return out;
            }
        }
    }

    /// Gives the lock up (it lapses anyway should the store not answer).
    pub(super) async fn release(self) {
        let _ = self.store.unlock(&self.name, self.holder).await;
    }
}

/// `work`'s output if it finishes before `other`, `None` once `other` finished.
async fn first<W: Future, O: Future>(mut work: Pin<&mut W>, mut other: Pin<&mut O>) -> Option<W::Output> {
    poll_fn(|cx| match work.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => other.as_mut().poll(cx).map(|_| None),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn a_lock_held_through_long_work_is_renewed_then_released() {
        let store = MemoryStore::new();
        let channel = B256::repeat_byte(9);
        let lock = SettleLock::take(&store, channel).await.unwrap().expect("free");
        assert!(SettleLock::take(&store, channel).await.unwrap().is_none(), "one holder at a time");
        // Work three lifetimes long: another holder still cannot take it midway.
        let probe = async {
            tokio::time::sleep(TTL * 2).await;
            SettleLock::take(&store, channel).await.unwrap().is_none()
        };
        let (_, still_mine) = tokio::join!(lock.during(tokio::time::sleep(TTL * 3)), probe);
        assert!(still_mine, "renewed while the work ran");
        assert!(lock.still_held().await.unwrap());
        lock.release().await;
        let next = SettleLock::take(&store, channel).await.unwrap();
        assert!(next.is_some(), "free once released");
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_stopped_renewing_loses_the_lock() {
        let store = MemoryStore::new();
        let channel = B256::repeat_byte(10);
        let dead = SettleLock::take(&store, channel).await.unwrap().expect("free");
        tokio::time::sleep(TTL + Duration::from_secs(1)).await;
        let heir = SettleLock::wait(&store, channel, Duration::ZERO).await.unwrap().expect("lapsed");
        assert!(!dead.still_held().await.unwrap(), "the old holder must not send");
        dead.release().await;
        assert!(heir.still_held().await.unwrap(), "releasing a lost lock leaves the new holder's alone");
    }
}
