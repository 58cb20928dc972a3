//! The `close` action: settle what was delivered, refund the rest (§4.6).

use alloy::primitives::Bytes;
use alloy::sol_types::{SolCall, SolEvent};

use super::voucher::hex_bytes;
use super::{Context, chain_error, store_error};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::method::tempo::payload::VoucherPayload;
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
        self.check_signature(close.channel_id, cumulative, &close.signature, channel.signer())?;
        self.session.book.record(close.channel_id, cumulative, hex_bytes(&close.signature)?);
        // Only now stop new spending, so `spent` cannot move under the capture below.
        let state = self.store.finalize(&id).await.map_err(store_error)?;
        let delivered = state.spent.get().max(channel.settled);
        let input = match self.config().protocol {
            // The v1 escrow pays out the voucher it is given: the highest one at or below
            // what was delivered, so the payee never captures more than it served.
            SessionProtocol::V1 => {
                let (amount, signature): (u128, Bytes) =
                    self.session.book.best(close.channel_id, 0, delivered).unwrap_or((channel.settled, Bytes::new()));
                IStreamChannelEscrow::closeCall { channelId: close.channel_id, cumulativeAmount: amount, signature }
                    .abi_encode()
            }
            // The v2 reserve takes a capture amount: exactly what was delivered.
            SessionProtocol::V2 => {
                let descriptor = self.session.book.descriptor(close.channel_id).ok_or_else(no_descriptor)?;
                ITip20ChannelReserve::closeCall {
                    descriptor: super::reserve_descriptor(&descriptor),
                    cumulativeAmount: super::u96(cumulative)?,
                    captureAmount: super::u96(delivered)?,
                    signature: hex_bytes(&close.signature)?,
                }
                .abi_encode()
            }
        };
        let mined = self.session.chain.send(self.config().escrow, input.into()).await.map_err(chain_error)?;
        let closed = mined.success
            && mined.logs.iter().filter(|log| log.address == self.config().escrow).any(|log| {
                let (topics, data) = (log.topics.iter().copied(), &log.data);
                IStreamChannelEscrow::ChannelClosed::decode_raw_log(topics.clone(), data)
                    .map(|e| e.channelId)
                    .or_else(|_| ITip20ChannelReserve::ChannelClosed::decode_raw_log(topics, data).map(|e| e.channelId))
                    .is_ok_and(|id| id == close.channel_id)
            });
        if !closed {
            return Err(PaymentError::new(PaymentErrorKind::Unavailable, "the close transaction failed"));
        }
        self.session.book.settled(close.channel_id, u128::MAX);
        let mut receipt = self.receipt(close.channel_id, &state, Some(mined.hash));
        receipt.accepted_cumulative = Some(close.cumulative_amount);
        Ok(Verified::Respond(receipt))
    }
}

pub(super) fn no_descriptor() -> PaymentError {
    PaymentError::new(PaymentErrorKind::InvalidPayload, "a v2 channel needs its descriptor")
}
