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
    /// A renewal under way: the figure it reports, when it was sent, the call.
    renewing: Option<(Delivered, Instant, BoxFuture<Result<(), StoreError>>)>,
    lost: bool,
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
            if let Some((figure, sent, call)) = &mut self.renewing {
                let outcome = match call.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(outcome) => outcome,
                };
                let (figure, sent) = (*figure, *sent);
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
            self.renewing = Some((delivered, Instant::now(), renew(delivered)));
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
