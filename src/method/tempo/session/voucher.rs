//! The `voucher` action: raise what a channel has paid for (§4.6).

use alloy::primitives::Bytes;

use super::{Context, store_error};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::payload::VoucherPayload;
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn voucher(&self, voucher: VoucherPayload) -> Result<Verified, PaymentError> {
        match &voucher.descriptor {
            Some(descriptor) => {
                self.check_descriptor(descriptor, voucher.channel_id)?;
                // Bound to the channel id by its hash: safe to learn from (another instance
                // may have opened the channel).
                self.session.book.remember(voucher.channel_id, *descriptor);
            }
            None if self.config().protocol == SessionProtocol::V2
                && self.session.book.descriptor(voucher.channel_id).is_none() =>
            {
                return Err(super::close::no_descriptor());
            }
            None => {}
        }
        let id = super::store_id(voucher.channel_id);
        let stored = self.store.load(&id).await.map_err(store_error)?;
        let Some(stored) = stored else {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"));
        };
        if stored.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"));
        }
        let channel = self.on_chain(voucher.channel_id, false).await?;
        self.check_source(&channel)?;
        let cumulative = voucher.cumulative_amount.get();
        if cumulative > channel.deposit {
            return Err(PaymentError::new(PaymentErrorKind::AmountExceedsDeposit, "voucher exceeds the deposit"));
        }
        if voucher.cumulative_amount < stored.accepted {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                "voucher is below the accepted amount",
            ));
        }
        // Formats are checked before any ECDSA work; the signer comes from the chain.
        self.check_signature(voucher.channel_id, cumulative, &voucher.signature, channel.signer())?;
        if cumulative <= channel.settled {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                "voucher is not above what is settled",
            ));
        }
        if voucher.cumulative_amount == stored.accepted {
            // An idempotent retry: answer with the current state, change nothing.
            return Ok(self.outcome(voucher.channel_id, &stored, None));
        }
        if let Some(min) = self.config().min_voucher_delta {
            if voucher.cumulative_amount.saturating_sub(stored.accepted) < min {
                return Err(PaymentError::new(
                    PaymentErrorKind::DeltaTooSmall,
                    format!("vouchers must add at least {min}"),
                ));
            }
        }
        let deposit = crate::amount::Amount::new(channel.deposit);
        let state = self.store.accept(&id, voucher.cumulative_amount, deposit).await.map_err(store_error)?;
        let raw = hex_bytes(&voucher.signature)?;
        self.session.book.record(voucher.channel_id, cumulative, raw);
        Ok(self.outcome(voucher.channel_id, &state, None))
    }
}

pub(super) fn hex_bytes(text: &str) -> Result<Bytes, PaymentError> {
    text.parse::<Bytes>().map_err(|_| PaymentError::new(PaymentErrorKind::InvalidSignature, "signature is not hex"))
}
