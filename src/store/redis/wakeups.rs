//! Wake-ups of [`changed`](crate::store::ChannelStore::changed) waiters over Redis pub/sub.
//!
//! One dedicated pub/sub connection per store (shared by its clones) listens on
//! [`TOPIC`], where every version bump is published with the channel's state key. A
//! background task fans each message out to the waiters of that key through a [`Notify`].
//! An entry lives only while someone waits on its key, so the map is as large as the
//! number of waited-on channels.
//!
//! While the subscription is down (the task reconnects with a backoff), [`Wakeups::live`]
//! says so and waiters poll instead; when it is back every waiter is woken once to
//! re-check, so a change published in the gap is not missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::keys::TOPIC;

/// How often the listener checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(5);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The waiters of one store and whether its subscription is up.
#[derive(Debug)]
pub(super) struct Wakeups {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    live: watch::Sender<bool>,
}

/// One waiter's registration; dropping it forgets the key once nobody waits on it.
pub(super) struct Wakeup {
    wakeups: Arc<Wakeups>,
    key: String,
    notify: Arc<Notify>,
}

/// The listener task, stopped when the last handle on the store goes.
#[derive(Debug)]
pub(super) struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Wakeups {
    /// Starts listening on `client`'s server; `connect_timeout` bounds each attempt.
    pub(super) fn start(client: redis::Client, connect_timeout: Duration) -> (Arc<Wakeups>, Listener) {
        let wakeups = Arc::new(Wakeups { waiters: Mutex::default(), live: watch::Sender::new(false) });
        let task = tokio::spawn(listen(client, Arc::clone(&wakeups), connect_timeout));
        (wakeups, Listener(task))
    }

    /// A store whose wake-ups never come: its waiters only poll.
    pub(super) fn disabled() -> Arc<Wakeups> {
        Arc::new(Wakeups { waiters: Mutex::default(), live: watch::Sender::new(false) })
    }

    /// Whether the subscription is up, and changes of it.
    pub(super) fn live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    /// Registers a waiter on the channel whose state key is `key`.
    pub(super) fn watch(self: &Arc<Self>, key: String) -> Wakeup {
        let notify = Arc::clone(self.waiters().entry(key.clone()).or_default());
        Wakeup { wakeups: Arc::clone(self), key, notify }
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // Nothing under this lock can leave the map half-changed, so a poisoned one is fine.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, key: &str) {
        if let Some(notify) = self.waiters().get(key) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        self.waiters().values().for_each(|notify| notify.notify_waiters());
    }

    fn set_live(&self, live: bool) {
        self.live.send_replace(live);
        // Waiters re-check: after a gap something may have changed unannounced, and on a
        // loss they switch to polling.
        self.wake_all();
    }
}

impl Wakeup {
    /// The notifier a waiter awaits (enable its `notified()` before checking the version).
    pub(super) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        let mut waiters = self.wakeups.waiters();
        // Under the lock no one can take a new clone: the map's and this one mean nobody
        // else waits on the key.
        if waiters.get(&self.key).is_some_and(|n| Arc::ptr_eq(n, &self.notify)) && Arc::strong_count(&self.notify) == 2
        {
            waiters.remove(&self.key);
        }
    }
}

/// Subscribes, fans messages out, and reconnects after a loss, until aborted.
async fn listen(client: redis::Client, wakeups: Arc<Wakeups>, connect_timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = timeout(connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(TOPIC).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            backoff = Duration::from_millis(100);
            wakeups.set_live(true);
            let (mut sink, mut messages) = pubsub.split();
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            if let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) {
                                wakeups.wake(key);
                            }
                        }
                        None => break,
                    },
                    _ = ping.tick() => {
                        // A half-open connection ends no stream; an unanswered ping does.
                        if !matches!(timeout(connect_timeout, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            wakeups.set_live(false);
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waited_keys(wakeups: &Wakeups) -> Vec<String> {
        let mut keys: Vec<String> = wakeups.waiters().keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn a_key_is_kept_only_while_someone_waits_on_it() {
        let wakeups = Wakeups::disabled();
        let first = wakeups.watch("a".to_owned());
        let second = wakeups.watch("a".to_owned());
        let other = wakeups.watch("b".to_owned());
        assert!(Arc::ptr_eq(&first.notify, &second.notify), "waiters on one key share a notifier");
        assert_eq!(waited_keys(&wakeups), ["a", "b"]);
        drop(first);
        assert_eq!(waited_keys(&wakeups), ["a", "b"], "`second` still waits on a");
        drop(second);
        assert_eq!(waited_keys(&wakeups), ["b"]);
        drop(other);
        assert!(waited_keys(&wakeups).is_empty());
    }

    #[tokio::test]
    async fn a_message_wakes_the_waiters_of_its_key_only() {
        let wakeups = Wakeups::disabled();
        let (mine, other) = (wakeups.watch("a".to_owned()), wakeups.watch("b".to_owned()));
        let mut woken = std::pin::pin!(mine.notify().notified());
        let mut idle = std::pin::pin!(other.notify().notified());
        woken.as_mut().enable();
        idle.as_mut().enable();
        wakeups.wake("a");
        timeout(Duration::from_secs(10), woken).await.expect("the waiter on a was not woken");
        assert!(timeout(Duration::from_millis(50), idle).await.is_err(), "a message for a woke b");
    }
}
