//! Pausing for a voucher, and cutting a stream off: what a stream does when its lease
//! runs short.

use std::pin::Pin;

use bytes::Bytes;

use tokio::time::{Sleep, sleep_until};

use super::ask::AskGuard;
use super::watchdog::{Taken, Watchdog};
use super::{BoxFuture, Metering, Source, Step, frames};
use crate::amount::Amount;
use crate::error::BudgetExhausted;
use crate::meter::Meter;
use crate::metering::account::Release;
use crate::method::Renewal;
use crate::store::{ChannelState, ChannelStore, StoreError};

/// A paused stream's timers, and the watchdog holding its account meanwhile.
pub(super) struct Pause<St: ChannelStore> {
    pub(super) deadline: Pin<Box<Sleep>>,
    pub(super) keep_alive: Pin<Box<Sleep>>,
    asked: Option<Amount>,
    /// What the channel had accepted when the stream last ran short: more means a voucher.
    accepted: Amount,
    /// The ask being recorded in the store, and the need-voucher that goes out once it is:
    /// a payment method accepts a voucher that runs ahead of delivery only up to a live ask.
    pub(super) announce: Option<(BoxFuture<Result<ChannelState, StoreError>>, Bytes)>,
    /// This stream's ask in the store, withdrawn when the pause ends.
    asker: AskGuard<St>,
    pub(super) watchdog: Watchdog<St>,
}

impl<M: Meter, St: ChannelStore> Metering<M, St> {
    /// The lease is `need` short of the next frame, with the channel at `state`: pause for
    /// a voucher (sessions, event streams) or end the stream.
    pub(super) fn on_short(&mut self, state: ChannelState, need: Amount) {
        // Only SSE carries the need-voucher event: other streams end.
        // A payment that must settle by a deadline cannot wait for a voucher either.
        if self.grant.renewal() != Renewal::Voucher || !self.is_event_stream() || self.settle_by.is_some() {
            return self.cut_off();
        }
        let Some(account) = self.account.take() else { return self.cut_off() };
        let store = account.store().clone();
        let window_units = ask_window(account.units(), self.policy.first_window_units, self.policy.window_units);
        // While paused, a watchdog holds the account and releases it at the deadline even
        // if the client never polls again.
        match &mut self.pause {
            Some(pause) => {
                if let Some(account) = pause.watchdog.put(account) {
                    // The deadline passed (or the channel closed) while the stream looked again.
                    self.account = Some(account);
                    return self.cut_off();
                }
            }
            None => {
                let Some(runtime) = account.runtime() else {
                    // No runtime to keep time on (a body driven outside tokio): no pause.
                    self.account = Some(account);
                    return self.cut_off();
                };
                let _inside = runtime.enter();
                let deadline = crate::clock::after(self.policy.pause_deadline);
                let watchdog =
                    Watchdog::start(account, Some((self.grant.channel().clone(), state.version)), deadline, &runtime);
                self.pause = Some(Pause {
                    deadline: Box::pin(sleep_until(deadline)),
                    keep_alive: Box::pin(sleep_until(crate::clock::after(self.policy.keep_alive))),
                    asked: None,
                    accepted: state.accepted,
                    announce: None,
                    asker: AskGuard::new(store.clone(), self.grant.channel().clone()),
                    watchdog,
                });
            }
        }
        let window = self.price.output.cost(window_units).unwrap_or(Amount::ZERO);
        let least = state.accepted.saturating_add(need.saturating_sub(state.available()));
        // Ask for a window ahead, but not past the deposit unless the next frame needs it.
        let required = least.saturating_add(window).min(state.deposit.max(least));
        if let Some(pause) = &mut self.pause {
            pause.accepted = state.accepted;
            // Ask again only once the last ask was met (and the stream is still short):
            // until then the payer's answer to it is on its way, and re-asking on every
            // other stream's voucher made concurrent streams ask many times over.
            if pause.asked.is_none_or(|asked| state.accepted >= asked) {
                pause.asked = Some(required);
                self.observed.paused(required);
                let event = frames::need_voucher(self.grant.channel(), required, state.accepted, state.deposit);
                let ask: BoxFuture<_> = Box::pin(pause.asker.ask(required, self.policy.pause_deadline));
                pause.announce = Some((ask, event));
            }
        }
        let channel = self.grant.channel().clone();
        self.step = Step::Paused(Box::pin(async move { store.changed(&channel, state.version).await }));
    }

    /// The channel changed (to `state`) while paused: take the account back and try again.
    pub(super) fn resume(&mut self, state: &ChannelState) {
        let voucher = self.pause.as_ref().is_some_and(|pause| state.accepted > pause.accepted);
        match self.pause.as_mut().and_then(|pause| pause.watchdog.take()) {
            Some(Taken::Account(account)) => {
                self.observed.resumed(voucher);
                self.account = Some(account);
                self.step = Step::Streaming;
            }
            Some(Taken::Released(release)) => self.cut_off_released(release),
            None => self.cut_off(),
        }
    }

    /// The budget stops the stream: end it cleanly where the format allows, and charge
    /// only what was forwarded.
    pub(super) fn cut_off(&mut self) {
        if let (None, Some(pause)) = (&self.account, &mut self.pause) {
            match pause.watchdog.take() {
                Some(Taken::Account(account)) => self.account = Some(account),
                Some(Taken::Released(release)) => return self.cut_off_released(release),
                None => {}
            }
        }
        self.end_cleanly();
        self.start_release();
    }

    /// The store answered that the lease is gone (reclaimed: this instance was presumed
    /// dead). Deliver nothing more: end the stream as a closed channel ends it. The release
    /// still happens, once (it changes nothing in the store then).
    pub(super) fn lease_lost(&mut self) {
        if let Some(account) = &mut self.account {
            account.lost();
        }
        self.cut_off();
    }

    /// A watchdog released the account (a pause's deadline, a closed channel, a payment's
    /// settle-by deadline): end the stream and wait for that release, or for the proof of
    /// the settlement it runs.
    pub(super) fn cut_off_released(&mut self, release: Release) {
        self.end_cleanly();
        self.step = match self.proving.take() {
            Some(wait) => {
                // The release settles on its own; `Step::Proving` reports the outcome.
                drop(release);
                let deadline = Box::pin(tokio::time::sleep_until(crate::clock::after(self.policy.proof_wait)));
                Step::Proving { wait, deadline }
            }
            None => {
                self.observed.ended("cutoff");
                Step::Releasing(release)
            }
        };
    }

    fn end_cleanly(&mut self) {
        self.drop_pending();
        if self.source != Source::Ended {
            self.source = Source::Ended;
            self.observed.cut_off();
            if self.is_grpc() {
                // A gRPC client reads a clean status from trailers, not a broken stream.
                self.trailers = Some(crate::grpc::budget_exhausted());
                return;
            }
            match (&self.cutter, self.meter.cutoff()) {
                (Some(_), Some(ending)) => self.out.push_back(ending),
                (Some(_), None) => {}
                (None, _) => self.failure = Some(BudgetExhausted.into()),
            }
        }
    }
}

/// Units of headroom to ask for beyond the next frame: a quarter of what this response has
/// delivered so far, between the first window and the configured one. Short responses ask
/// in small steps and long ones in large steps, so what a v1 close can leave uncaptured
/// (the distance from what was delivered down to the last voucher at or below it) stays
/// under about a fifth of the last response, and a long stream still needs few vouchers.
fn ask_window(delivered: u64, first: u64, most: u64) -> u64 {
    (delivered / 4).clamp(first.min(most), most)
}

#[cfg(test)]
mod tests {
    use super::ask_window;

    #[test]
    fn the_ask_grows_with_the_stream_within_the_configured_window() {
        assert_eq!(ask_window(0, 16, 256), 16, "a fresh stream asks for a small step");
        assert_eq!(ask_window(200, 16, 256), 50, "a quarter of what it delivered");
        assert_eq!(ask_window(10_000, 16, 256), 256, "never past the configured window");
        assert_eq!(ask_window(10_000, 16, 0), 0, "window 0: exactly what the next frame needs");
        assert_eq!(ask_window(0, 16, 8), 8, "a configured window under the first wins");
        assert_eq!(ask_window(0, 256, 256), 256, "first = most: fixed steps");
    }
}
