//! A payment that must settle by a deadline (see [`Grant::settle_by`]): the stream ends
//! there, and between polls a [`Watchdog`] holds its account, so a client that stops
//! reading cannot hold the payment past the deadline (its release, and the settlement
//! that follows it, happen on time without the body).
//!
//! [`Grant::settle_by`]: crate::method::Grant::settle_by

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::SystemTime;

use tokio::time::{Instant, Sleep, sleep_until};

use super::watchdog::{Taken, Watchdog};
use super::{Gating, Metering, Step};
use crate::meter::Meter;
use crate::store::ChannelStore;

/// The deadline of a stream whose payment must settle by then.
pub(super) enum SettleBy<St: ChannelStore> {
    /// No watchdog yet: the body has not handed its account out. The timer wakes a body
    /// that waits on the store before it ever parked (a growth in its first poll).
    Due { at: Instant, timer: Option<Pin<Box<Sleep>>> },
    /// A watchdog holds the account between polls (`parked`: it holds it now).
    Watched { watchdog: Watchdog<St>, at: Instant, parked: bool },
}

impl<St: ChannelStore> SettleBy<St> {
    /// The deadline `at`, on the runtime's clock.
    pub(super) fn at(at: SystemTime) -> Self {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        SettleBy::Due { at: crate::clock::after(left), timer: None }
    }
}

impl<M: Meter, St: ChannelStore> Metering<M, St> {
    /// At the start of a poll: takes the account back from the watchdog. If the watchdog
    /// released it meanwhile (the deadline passed while nobody polled), the stream ends with
    /// that release.
    pub(super) fn unpark(&mut self) {
        let Some(SettleBy::Watched { watchdog, parked, .. }) = &mut self.settle_by else { return };
        if !std::mem::take(parked) {
            return;
        }
        match watchdog.take() {
            Some(Taken::Account(account)) => self.account = Some(account),
            Some(Taken::Released(release)) => {
                self.settle_by = None;
                self.cut_off_released(release);
            }
            None => {}
        }
    }

    /// At the end of a poll: hands the account to the watchdog until the next one. Only a
    /// stream between frames does: a growth, a release or a renewal under way needs the
    /// body to go on polling it, and so does content charged but held for a running gate
    /// (the gate decides whether it goes out, and is charged). A stream's last frame (its
    /// metered tail) parks too: the client may stop reading right after it.
    pub(super) fn park(&mut self, cx: &mut Context<'_>) {
        let Some(settle_by) = &mut self.settle_by else { return };
        if !matches!(self.step, Step::Streaming) || matches!(self.gate, Some(Gating::Running(_))) {
            return;
        }
        let Some(account) = self.account.take_if(|account| !account.is_renewing()) else { return };
        match settle_by {
            SettleBy::Due { at, .. } => {
                let Some(runtime) = account.runtime() else {
                    // No runtime to keep time on (a body driven outside tokio): the body's own
                    // check at each poll is all there is.
                    self.account = Some(account);
                    return;
                };
                let at = *at;
                let watchdog = Watchdog::start(account, None, at, &runtime);
                *settle_by = SettleBy::Watched { watchdog, at, parked: true };
            }
            SettleBy::Watched { watchdog, parked, .. } => match watchdog.put(account) {
                None => *parked = true,
                Some(account) => {
                    // The watchdog fired while the body held the account: release it now, not
                    // when (if ever) the client polls again, and end the stream then.
                    self.account = Some(account);
                    self.settle_by = None;
                    self.cut_off();
                    cx.waker().wake_by_ref();
                }
            },
        }
    }

    /// Whether the deadline has passed; registers the body to be woken when the watchdog
    /// fires.
    pub(super) fn settle_by_passed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.settle_by {
            None => false,
            Some(SettleBy::Due { at, timer }) => {
                if Instant::now() >= *at {
                    return true;
                }
                if timer.is_none() {
                    // Created on the account's runtime: a body polled outside tokio has none.
                    if let Some(runtime) = self.account.as_ref().and_then(|account| account.runtime()) {
                        let _inside = runtime.enter();
                        *timer = Some(Box::pin(sleep_until(*at)));
                    }
                }
                timer.as_mut().is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
            }
            Some(SettleBy::Watched { watchdog, at, .. }) => watchdog.poll_fired(cx).is_ready() || Instant::now() >= *at,
        }
    }
}
