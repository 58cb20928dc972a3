//! The `voucher` action: raise what a channel has paid for (§4.6).
//!
//! Order of checks: what is public (the channel exists, the deposit) first, then the
//! signature, and only then anything that depends on the channel's private state (accepted,
//! spent), so an unsigned request learns nothing about it and changes nothing.

use super::{Context, hex_bytes, store_error};
use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::payload::VoucherPayload;
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn voucher(&self, voucher: VoucherPayload) -> Result<Verified, PaymentError> {
        self.check_voucher(voucher, Late::Idempotent).await
    }

    /// An open naming a known channel: its voucher must be at or above what was accepted
    /// (an open is not raced by a concurrent stream; a stale one proves nothing current).
    pub(super) async fn retried_open(&self, voucher: VoucherPayload) -> Result<Verified, PaymentError> {
        self.check_voucher(voucher, Late::Refused).await
    }

    async fn check_voucher(&self, voucher: VoucherPayload, late: Late) -> Result<Verified, PaymentError> {
        let claimed = voucher.descriptor.is_some();
        let descriptor = self.descriptor(voucher.channel_id, voucher.descriptor).await?;
        if self.config().protocol == SessionProtocol::V2 && descriptor.is_none() {
            return Err(super::no_descriptor());
        }
        let id = super::store_id(voucher.channel_id);
        let Some(stored) = self.store.load(&id).await.map_err(store_error)? else {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"));
        };
        if stored.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"));
        }
        let channel = self.on_chain(voucher.channel_id, false, descriptor.as_ref()).await?;
        self.check_source(&channel)?;
        let cumulative = voucher.cumulative_amount.get();
        if cumulative > channel.deposit {
            return Err(PaymentError::new(PaymentErrorKind::AmountExceedsDeposit, "voucher exceeds the deposit"));
        }
        // Formats are checked before any ECDSA work; the signer comes from the chain.
        self.check_signature(voucher.channel_id, cumulative, &voucher.signature, channel.signer())?;
        // Signed by the channel's signer: from here on the sender may learn the state. A v2
        // descriptor this instance was sent is kept (another instance may have opened the
        // channel before the store kept descriptors); one read when it is there already.
        if let (Some(descriptor), SessionProtocol::V2, true) = (descriptor, self.config().protocol, claimed) {
            self.session.book.remember(self.store, voucher.channel_id, &descriptor).await.map_err(store_error)?;
        }
        let below = voucher.cumulative_amount < stored.accepted;
        if late == Late::Refused && below {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                "voucher is below the accepted amount",
            ));
        }
        if voucher.cumulative_amount <= stored.accepted && !stored.accepted.is_zero() {
            // A retry, or a concurrent stream's older voucher arriving after a higher one:
            // idempotent, answered with the current state, changing nothing (a 402 here
            // would kill that client's stream for a voucher it signed honestly).
            return Ok(self.outcome(voucher.channel_id, &stored, None, &channel));
        }
        if cumulative <= channel.settled {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                "voucher is not above what is settled",
            ));
        }
        // A voucher answering a live ask is never too small (concurrent streams can ask for
        // amounts less than a unit apart).
        let min = self.min_delta()?;
        if voucher.cumulative_amount > stored.asked && voucher.cumulative_amount.saturating_sub(stored.accepted) < min {
            // While streams are live, the ask this voucher answers may have just been
            // withdrawn (another stream's voucher covered it, maybe on another instance): a
            // 402 would kill an honest stream. It is answered like a retry instead, changing
            // nothing (no store write, so tiny vouchers cost a spammer a signature each).
            if !stored.reserved.is_zero() && late == Late::Idempotent {
                return Ok(self.outcome(voucher.channel_id, &stored, None, &channel));
            }
            return Err(PaymentError::new(
                PaymentErrorKind::DeltaTooSmall,
                format!("vouchers must add at least {min}"),
            ));
        }
        // A voucher may run `ahead` of delivery on its own, and up to what a live stream
        // asked for (an upfront or a hidden-output allowance can be larger than a window).
        // It may also rise by `ahead` over the accepted amount: a new request's upfront unit
        // when an earlier stream's asks left the channel ahead of delivery (mppx pays one on
        // every request). Vouchers then stay at most `ahead` apart, so the one settled (the
        // highest at or below delivery) still misses at most `ahead` — as long as the book
        // keeps them all: a payer walking a ladder of such vouchers far ahead of delivery is
        // stopped before the book would have to thin it (which would widen the gaps).
        let ahead = self.max_ahead()?;
        let on_its_own = stored.spent.saturating_add(stored.reserved).saturating_add(ahead).max(stored.asked);
        // Vouchers within what live streams hold are theirs; the ladder is what lies beyond.
        let held = stored.spent.saturating_add(stored.reserved).get();
        let book = &self.session.book;
        let ladder = book.ladder(self.store, voucher.channel_id).await.map_err(store_error)?;
        let limit = if ladder.ahead_of(held) + 1 < super::ladder::MAX_VOUCHERS {
            on_its_own.max(stored.accepted.saturating_add(ahead))
        } else {
            on_its_own
        };
        if voucher.cumulative_amount > limit {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                format!("voucher runs more than {ahead} ahead of delivery: sign at most {limit}"),
            ));
        }
        let raw = hex_bytes(&voucher.signature)?;
        let deposit = Amount::new(channel.deposit);
        // Kept before it is accepted: whatever the payer is served for from here on can be
        // captured by any instance, after any restart. Should the accept fail (a close came
        // first), the voucher stays kept: it is validly signed and within the deposit, and
        // another instance may have accepted the same amount meanwhile.
        book.record(self.store, voucher.channel_id, cumulative, raw).await.map_err(store_error)?;
        let state = self.store.accept(&id, voucher.cumulative_amount, deposit).await.map_err(store_error)?;
        // Trimming is housekeeping: the voucher is accepted, so a failure here is not the
        // payer's (the next voucher or settlement trims again).
        let _ = book.trim(self.store, voucher.channel_id, channel.settled, state.spent.get()).await;
        Ok(self.outcome(voucher.channel_id, &state, None, &channel))
    }

    /// The configured `minVoucherDelta`, or one unit's price rounded down (at least one
    /// base unit): what one more unit costs at the least.
    fn min_delta(&self) -> Result<Amount, PaymentError> {
        if let Some(min) = self.config().min_voucher_delta {
            return Ok(min);
        }
        // Without a quote (a management request, not priced) the challenge's unit price is
        // the rate rounded up: one base unit less is at most the rate rounded down.
        let floor = match self.verify.quote {
            Some(quote) => quote.price.output.amount().get() / u128::from(quote.price.output.per()),
            None => self.unit_price()?.get().saturating_sub(1),
        };
        Ok(Amount::new(floor.max(1)))
    }

    /// How far a voucher may run ahead of `spent + reserved`.
    pub(super) fn max_ahead(&self) -> Result<Amount, PaymentError> {
        if let Some(ahead) = self.config().max_voucher_ahead {
            return Ok(ahead);
        }
        let unit = self.unit_price()?;
        let units = unit.get().saturating_mul(4);
        // Without a quote, the window at the challenge's unit price; but with the
        // `amount` hook the challenge's `amount` may be a whole request's maximum, not a
        // unit price, and a window of those would let a management voucher run far past
        // what any content request allows: only the four `amount`s (and live asks) then.
        let window = match (self.verify.quote, &self.session.amount) {
            (Some(_), _) => self.verify.window,
            (None, Some(_)) => Amount::ZERO,
            (None, None) => Amount::new(unit.get().saturating_mul(u128::from(self.verify.window_units))),
        };
        Ok(window.saturating_add(window).saturating_add(Amount::new(units)))
    }
}

/// What a validly signed voucher below the accepted amount gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Late {
    /// The current receipt, nothing changed.
    Idempotent,
    /// A 402.
    Refused,
}
