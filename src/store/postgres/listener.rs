//! How `changed` learns of a new version: a dedicated connection `LISTEN`s for the
//! notifications every step that bumps a version sends, and wakes that channel's waiters.
//! Waiters check the version after registering, so a change between their last read and
//! their registration is not missed. While the connection is down (it reconnects on its
//! own), waiters poll instead.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Socket};

/// How long the listener waits before it reconnects.
const RECONNECT: Duration = Duration::from_secs(1);

/// A connection with nothing to say for this long is probed (every [`KEEPALIVE`] /
/// 3, three times), so a silently dead one is noticed, and waiters fall back to polling,
/// within about a minute.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The per-channel waiters of one store (shared by its clones) and whether their wake-ups
/// can be trusted right now.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    /// Only channels someone waits on: an entry goes with its last waiter.
    channels: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    listening: AtomicBool,
}

/// One `changed` call's registration; dropping it unregisters.
pub(super) struct Watch {
    waiters: Arc<Waiters>,
    channel: String,
    notify: Arc<Notify>,
}

impl Waiters {
    pub(super) fn watch(self: &Arc<Self>, channel: &str) -> Watch {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (notify, count) = channels.entry(channel.to_owned()).or_default();
        *count += 1;
        Watch { waiters: self.clone(), channel: channel.to_owned(), notify: notify.clone() }
    }

    /// Whether the listener is connected and listening: otherwise wake-ups may be missed.
    pub(super) fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Wakes `channel`'s waiters; an empty payload (an id too long to send) wakes everyone.
    fn wake(&self, channel: &str) {
        let channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match channel {
            "" => channels.values().for_each(|(notify, _)| notify.notify_waiters()),
            channel => channels.get(channel).iter().for_each(|(notify, _)| notify.notify_waiters()),
        }
    }

    fn set_listening(&self, listening: bool) {
        if self.listening.swap(listening, Ordering::AcqRel) != listening {
            // Up: whatever was announced while nobody listened, every waiter looks again.
            // Down: every waiter starts polling now rather than at its next backstop.
            self.wake("");
        }
    }
}

impl Watch {
    /// Resolves at the next wake-up of this channel. Call [`Notified::enable`] (through
    /// `pin!` + `as_mut().enable()`) before reading the version, so no wake-up is lost.
    pub(super) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut channels = self.waiters.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, count)) = channels.get_mut(&self.channel) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                channels.remove(&self.channel);
            }
        }
    }
}

/// The listening task of one store (and its clones); dropping it stops the task.
#[derive(Debug)]
pub(super) struct Listener {
    waiters: Arc<Waiters>,
    task: AbortHandle,
}

impl Listener {
    /// Starts listening on notification channel `channel` with `config`.
    pub(super) fn spawn(mut config: Config, channel: String) -> Self {
        config.keepalives(true).keepalives_idle(KEEPALIVE).keepalives_interval(KEEPALIVE / 3).keepalives_retries(3);
        let waiters = Arc::new(Waiters::default());
        let task = tokio::spawn(listen(config, channel, waiters.clone())).abort_handle();
        Listener { waiters, task }
    }

    pub(super) fn waiters(&self) -> &Arc<Waiters> {
        &self.waiters
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(config: Config, channel: String, waiters: Arc<Waiters>) {
    loop {
        // A connection that cannot be made or listen is simply retried: meanwhile waiters
        // poll, so a down listener delays wake-ups but loses none.
        if let Ok((client, connection)) = config.connect(NoTls).await {
            session(&client, connection, &channel, &waiters).await;
        }
        waiters.set_listening(false);
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Listens until the connection ends.
async fn session(client: &Client, mut connection: Connection<Socket, NoTlsStream>, channel: &str, waiters: &Waiters) {
    // `channel` is made of a checked schema name, so it needs no quoting.
    let listen = format!("LISTEN {channel}");
    let mut listening = pin!(client.batch_execute(&listen));
    let listened = poll_fn(|cx| match pump(&mut connection, waiters, cx) {
        Poll::Ready(()) => Poll::Ready(false),
        Poll::Pending => listening.as_mut().poll(cx).map(|result| result.is_ok()),
    })
    .await;
    if listened {
        waiters.set_listening(true);
        poll_fn(|cx| pump(&mut connection, waiters, cx)).await;
    }
}

/// Drives the connection, waking waiters for each notification; ready when it ends.
fn pump(connection: &mut Connection<Socket, NoTlsStream>, waiters: &Waiters, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        match ready!(connection.poll_message(cx)) {
            Some(Ok(AsyncMessage::Notification(notification))) => waiters.wake(notification.payload()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;

    fn entries(waiters: &Waiters) -> usize {
        waiters.channels.lock().unwrap().len()
    }

    #[test]
    fn an_entry_lives_as_long_as_its_waiters() {
        let waiters = Arc::new(Waiters::default());
        let (first, second) = (waiters.watch("a"), waiters.watch("a"));
        let other = waiters.watch("b");
        assert_eq!(entries(&waiters), 2);
        drop(first);
        assert_eq!(entries(&waiters), 2, "a waiter on `a` is left");
        drop((second, other));
        assert_eq!(entries(&waiters), 0);
    }

    #[test]
    fn a_notification_wakes_its_channel_and_an_empty_one_wakes_all() {
        let waiters = Arc::new(Waiters::default());
        let (a, b) = (waiters.watch("a"), waiters.watch("b"));
        let (mut on_a, mut on_b) = (pin!(a.notified()), pin!(b.notified()));
        on_a.as_mut().enable();
        on_b.as_mut().enable();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        waiters.wake("a");
        assert!(on_a.as_mut().poll(&mut cx).is_ready());
        assert!(on_b.as_mut().poll(&mut cx).is_pending(), "`b` was not notified");
        waiters.wake("");
        assert!(on_b.as_mut().poll(&mut cx).is_ready());
    }
}
