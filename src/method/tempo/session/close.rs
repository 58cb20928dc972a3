//! The `close` action: settle what was delivered, refund the rest (§4.6).

use alloy::primitives::Bytes;
use alloy::sol_types::{SolCall, SolEvent};

use super::voucher::hex_bytes;
use super::{Context, chain_error, store_error};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::escrow::IStreamChannelEscrow;
use crate::method::tempo::payload::VoucherPayload;
use crate::method::tempo::{VoucherSignature, verify_voucher};
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn close(&self, close: VoucherPayload) -> Result<Verified, PaymentError> {
        let id = super::store_id(close.channel_id);
        let Some(stored) = self.store.load(&id).await.map_err(store_error)? else {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"));
        };
        if stored.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is already closed"));
        }
        let channel = self.on_chain(close.channel_id, true).await?;
        self.check_source(&channel)?;
        let cumulative = close.cumulative_amount.get();
        let delivered = stored.spent.get().max(channel.settled);
        if cumulative < delivered || cumulative > channel.deposit {
            return Err(PaymentError::new(
                PaymentErrorKind::PaymentInsufficient,
                format!("the close voucher must cover the {delivered} delivered and stay within the deposit"),
            ));
        }
        let signature = VoucherSignature::from_hex(&close.signature)
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidSignature, e.to_string()))?;
        verify_voucher(&self.session.domain, close.channel_id, cumulative, &signature, channel.signer())
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidSignature, e.to_string()))?;
        self.session.book.record(close.channel_id, cumulative, hex_bytes(&close.signature)?);
        // Only now stop new spending, so `spent` cannot move under the capture below.
        let state = self.store.finalize(&id).await.map_err(store_error)?;
        let delivered = state.spent.get().max(channel.settled);
        // The v1 escrow pays out the voucher it is given: the highest one at or below what
        // was delivered, so the payee never captures more than it served.
        let (amount, signature): (u128, Bytes) =
            self.session.book.best(close.channel_id, 0, delivered).unwrap_or((channel.settled, Bytes::new()));
        let call = IStreamChannelEscrow::closeCall { channelId: close.channel_id, cumulativeAmount: amount, signature };
        let mined =
            self.session.chain.send(self.config().escrow, call.abi_encode().into()).await.map_err(chain_error)?;
        let closed = mined.success
            && mined.logs.iter().any(|log| {
                IStreamChannelEscrow::ChannelClosed::decode_raw_log(log.topics.iter().copied(), &log.data)
                    .is_ok_and(|e| e.channelId == close.channel_id)
            });
        if !closed {
            return Err(PaymentError::new(PaymentErrorKind::Unavailable, "the close transaction failed"));
        }
        self.session.book.settled(close.channel_id, u128::MAX);
        let _ = self.session.cache.refresh(&self.session.chain, self.config().escrow, close.channel_id).await;
        let mut receipt = self.receipt(close.channel_id, &state, Some(mined.hash));
        receipt.accepted_cumulative = Some(close.cumulative_amount);
        Ok(Verified::Respond(receipt))
    }
}
