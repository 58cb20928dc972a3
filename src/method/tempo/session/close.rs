//! The `close` action: settle what was delivered, refund the rest (§4.6).

use super::{Context, chain_error, hex_bytes, no_descriptor, store_error};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::{ChainErrorKind, OnChainChannel, TempoChain};
use crate::method::tempo::payload::VoucherPayload;
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    /// Closes the channel (see `TempoSession::close_channel` for the order: stop delivery,
    /// drain, capture). A close that failed on chain leaves the channel closing in the
    /// store, and the same credential may be sent again: the retry re-drains and resends,
    /// or finds the channel already closed on chain.
    pub(super) async fn close(&self, close: VoucherPayload) -> Result<Verified, PaymentError> {
        let claimed = close.descriptor.is_some();
        let descriptor = self.descriptor(close.channel_id, close.descriptor).await?;
        let id = super::store_id(close.channel_id);
        let Some(stored) = self.store.load(&id).await.map_err(store_error)? else {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"));
        };
        let (chain, config) = (&self.session.chain, self.config());
        let channel = self
            .session
            .cache
            .refresh(chain, config, close.channel_id, descriptor.as_ref())
            .await
            .map_err(chain_error)?;
        // Who may sign: from the chain (v1 keeps closed channels), or the descriptor hashed
        // into the id (the v2 reserve deletes them).
        let parties = match (config.protocol, descriptor) {
            (SessionProtocol::V1, _) => channel.clone(),
            (SessionProtocol::V2, Some(d)) => OnChainChannel {
                payer: d.payer,
                authorized_signer: d.authorized_signer,
                finalized: channel.deposit == 0,
                ..channel.clone()
            },
            (SessionProtocol::V2, None) => return Err(no_descriptor()),
        };
        if !parties.exists() {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not on chain"));
        }
        self.check_source(&parties)?;
        let cumulative = close.cumulative_amount.get();
        self.check_signature(close.channel_id, cumulative, &close.signature, parties.signer())?;
        let book = &self.session.book;
        if let (SessionProtocol::V2, Some(d), true) = (config.protocol, descriptor, claimed) {
            // Checked against the id and signed for: the capture needs it.
            book.remember(self.store, close.channel_id, &d).await.map_err(store_error)?;
        }
        if parties.finalized {
            // Closed already (an earlier attempt whose answer was lost, or the payer).
            self.session.forget(self.store, close.channel_id).await;
            let state = self.store.finalize(&id).await.map_err(store_error)?;
            return Ok(Verified::Respond(self.receipt(close.channel_id, &state, None)));
        }
        if cumulative > channel.deposit {
            return Err(PaymentError::new(PaymentErrorKind::AmountExceedsDeposit, "close voucher exceeds the deposit"));
        }
        // The spec asks for a close voucher at or above `spent`. A lower one is fine when a
        // higher voucher is at hand; with none (an instance that never saw them, a restart)
        // it would capture less than was delivered: refused, nothing changed.
        let ladder = book.ladder(self.store, close.channel_id).await.map_err(store_error)?;
        let highest = ladder.highest().map_or(0, |(amount, _)| amount);
        if highest.max(cumulative) < stored.spent.get() {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                format!("the close voucher must cover what was delivered: sign at least {}", stored.spent),
            ));
        }
        // The close voucher is a signed voucher like any other; the capture never exceeds
        // what was delivered, whatever it says.
        let signature = hex_bytes(&close.signature)?;
        book.record(self.store, close.channel_id, cumulative, signature).await.map_err(store_error)?;
        let (state, tx) =
            self.session.close_channel(self.store, close.channel_id).await.map_err(|e| match e.kind() {
                ChainErrorKind::Unavailable => chain_error(e),
                _ => PaymentError::new(PaymentErrorKind::Unavailable, format!("the close did not go through: {e}")),
            })?;
        let mut receipt = self.receipt(close.channel_id, &state, tx);
        receipt.accepted_cumulative = Some(close.cumulative_amount.max(state.accepted));
        Ok(Verified::Respond(receipt))
    }
}
