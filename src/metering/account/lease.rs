//! Keeping a response's lease alive while it is served.
//!
//! A reservation lapses [`ChannelStore::lease`] after it was last renewed, and is then
//! reclaimed with what its holder last reported (see the store's
//! [Leases](crate::store#leases)). So whoever holds an [`Account`](super::Account) (the
//! response future while the inner service runs, the metering body, a paused stream's
//! watchdog) polls its [`Keeper`] alongside its own work: every third of the lease it
//! renews the lease with what was delivered so far. The timer lives in the holder and
//! only runs while the holder is polled, so a holder that is gone (a crashed instance, a
//! leaked body) stops renewing and its lease comes back to the payer and the seller.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::amount::Amount;
use crate::store::{StoreError, StoreErrorKind};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The shortest time between two timed renewals, whatever the lease: a tiny lease must
/// not turn the timer into a busy loop of store calls.
const SHORTEST_INTERVAL: Duration = Duration::from_millis(10);

/// What a response has delivered so far, as reported to the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) amount: Amount,
    pub(crate) units: u64,
}

/// The store answered that the lease is gone (reclaimed: this instance was presumed dead,
/// or it was released). Its holder must deliver nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseLost;

/// How often to renew a lease of `lease`: a third of it (the store's rule), at least
/// [`SHORTEST_INTERVAL`].
pub(crate) fn interval(lease: Duration) -> Duration {
    (lease / 3).max(SHORTEST_INTERVAL)
}

/// The renewal clock of one lease.
pub(crate) struct Keeper {
    every: Duration,
    /// When the next timed renewal is due.
    due: Instant,
    /// The last figure the store acknowledged: what it charges if the lease lapses now.
    renewed: Delivered,
    /// Created on first use, on the account's runtime (none: no timed renewals).
    timer: Option<Pin<Box<Sleep>>>,
    renewing: Option<Box<Renewing>>,
    lost: bool,
}

/// A renewal under way.
struct Renewing {
    /// The figure it reports.
    delivered: Delivered,
    /// When it was sent: the store restarts the lease no earlier.
    sent: Instant,
    call: BoxFuture<Result<(), StoreError>>,
}

impl Keeper {
    /// A keeper for a lease of `lease` taken just now.
    pub(crate) fn new(lease: Duration) -> Self {
        let every = interval(lease);
        Keeper {
            every,
            due: crate::clock::after(every),
            renewed: Delivered::default(),
            timer: None,
            renewing: None,
            lost: false,
        }
    }

    /// Whether the store answered that the lease is gone.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether a renewal is under way (its answer wakes whoever polled it last).
    pub(crate) fn is_renewing(&self) -> bool {
        self.renewing.is_some()
    }

    /// The last figure the store acknowledged.
    pub(crate) fn renewed(&self) -> Delivered {
        self.renewed
    }

    /// The store restarted the lease at `sent` (a renewal or a growth), and recorded
    /// `delivered` if it was a renewal that succeeded.
    pub(crate) fn restarted(&mut self, sent: Instant, delivered: Option<Delivered>) {
        self.due = self.due.max(sent.checked_add(self.every).unwrap_or(sent));
        if let Some(delivered) = delivered {
            self.renewed = delivered;
        }
    }

    /// The lease is gone.
    pub(crate) fn lose(&mut self) {
        self.lost = true;
        self.renewing = None;
    }

    /// Renews when due, reporting `delivered`; `renew` makes the store call.
    ///
    /// `Ready(Ok)`: the lease is held and no renewal is under way (the timer will wake the
    /// task when the next one is due). `Pending`: a renewal is under way; its holder must
    /// not deliver until it answers (the lease may have lapsed while nobody polled).
    /// `Ready(Err)`: the lease is gone, now and for good.
    ///
    /// A renewal that fails in the backend is tried again at the next tick: the stream goes
    /// on meanwhile, but only within what is already reserved (growing needs the store),
    /// and the store still holds the last figure it acknowledged.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        runtime: Option<&Handle>,
        delivered: Delivered,
        renew: impl FnOnce(Delivered) -> BoxFuture<Result<(), StoreError>>,
    ) -> Poll<Result<(), LeaseLost>> {
        let mut renew = Some(renew);
        loop {
            if self.lost {
                return Poll::Ready(Err(LeaseLost));
            }
            if let Some(renewing) = &mut self.renewing {
                let outcome = match renewing.call.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(outcome) => outcome,
                };
                let (figure, sent) = (renewing.delivered, renewing.sent);
                self.renewing = None;
                match outcome {
                    Ok(()) => self.restarted(sent, Some(figure)),
                    Err(error) if *error.kind() == StoreErrorKind::NotFound => self.lose(),
                    // Retried at the next tick, not at once: no loop of failing calls.
                    Err(_) => self.due = crate::clock::after(self.every),
                }
                continue;
            }
            let due = self.due;
            let Some(timer) = self.timer(runtime) else { return Poll::Ready(Ok(())) };
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Ready(Ok(()));
            }
            let Some(renew) = renew.take() else { return Poll::Ready(Ok(())) };
            self.renewing = Some(Box::new(Renewing { delivered, sent: Instant::now(), call: renew(delivered) }));
        }
    }

    fn timer(&mut self, runtime: Option<&Handle>) -> Option<&mut Pin<Box<Sleep>>> {
        if self.timer.is_none() {
            // No runtime to keep time on (a body driven outside tokio): growth still renews.
            let runtime = runtime.cloned().or_else(|| Handle::try_current().ok())?;
            let _inside = runtime.enter();
            self.timer = Some(Box::pin(sleep_until(self.due)));
        }
        self.timer.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use super::*;

    fn counted(calls: &Arc<AtomicUsize>, outcome: fn() -> Result<(), StoreError>) -> BoxFuture<Result<(), StoreError>> {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(outcome()))
    }

    #[test]
    fn a_tiny_lease_does_not_make_a_busy_loop() {
        assert_eq!(interval(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(interval(Duration::ZERO), SHORTEST_INTERVAL);
    }

    #[test]
    fn without_a_runtime_nothing_is_renewed_on_time_and_nothing_panics() {
        let mut keeper = Keeper::new(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut cx = Context::from_waker(Waker::noop());
        let polled = keeper.poll(&mut cx, None, Delivered::default(), |_| counted(&calls, || Ok(())));
        assert_eq!(polled, Poll::Ready(Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn renews_when_due_once_per_interval_and_a_not_found_loses_the_lease_for_good() {
        let mut keeper = Keeper::new(Duration::from_secs(3));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut cx = Context::from_waker(Waker::noop());
        let figure = Delivered { amount: Amount::new(7), units: 7 };
        let ok = || Ok(());
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, ok)), Poll::Ready(Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not due yet");

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, ok)), Poll::Ready(Ok(())));
        assert_eq!((calls.load(Ordering::SeqCst), keeper.renewed()), (1, figure));
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, ok)), Poll::Ready(Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "once per interval");

        tokio::time::advance(Duration::from_secs(1)).await;
        let backend = || Err(StoreError::backend("down"));
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, backend)), Poll::Ready(Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, backend)), Poll::Ready(Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a failed renewal waits for the next tick");

        tokio::time::advance(Duration::from_secs(1)).await;
        let gone = || Err(StoreError::new(StoreErrorKind::NotFound));
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, gone)), Poll::Ready(Err(LeaseLost)));
        assert!(keeper.is_lost());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(keeper.poll(&mut cx, None, figure, |_| counted(&calls, ok)), Poll::Ready(Err(LeaseLost)));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "nothing renews a lost lease");
    }
}
