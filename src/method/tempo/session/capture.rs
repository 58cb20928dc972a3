//! Closing a channel on chain: stop new delivery, let live streams finish, then capture
//! what was delivered. Shared by the `close` action and server-side closes (settlement).

use alloy::primitives::{B256, Bytes};
use alloy::sol_types::{SolCall, SolEvent};

use super::TempoSession;
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::{ChainError, ChainErrorKind, OnChainChannel, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::store::{ChannelState, ChannelStore};

impl<C: TempoChain> TempoSession<C> {
    /// Closes `channel`, capturing what it delivered.
    ///
    /// 1. The store finalizes the channel: no voucher, reservation or growth succeeds any
    ///    more, so paused streams wake and end, and streaming ones end when their lease
    ///    runs out. A failed close leaves it so ("closing"), and a retry starts here again.
    /// 2. Live leases drain: up to the drain timeout, the close waits until `reserved` is
    ///    zero, so what the streams delivered is committed to `spent`. A stream whose
    ///    client stopped reading cannot end by itself (its body is not polled); when the
    ///    timeout passes first, the close counts the leases still held as delivered
    ///    (`spent + reserved`): the payer, who closed while its own stream stalled, pays
    ///    at most the undelivered rest of those leases (a window each), rather than the
    ///    payee losing everything they delivered.
    /// 3. The capture: v2 captures what was delivered exactly, with the highest accepted
    ///    voucher (at or above it); v1 pays out a voucher exactly, so it uses the highest
    ///    voucher at or below what was delivered (the payer never pays for undelivered
    ///    units; the payee loses less than one voucher step, at most `max_voucher_ahead`
    ///    or the largest ask of a live stream).
    ///
    /// Returns the final store state and the close transaction (`None` when the channel
    /// was already closed on chain, by an earlier attempt whose answer was lost or by the
    /// payer).
    pub(super) async fn close_channel<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
    ) -> Result<(ChannelState, Option<B256>), ChainError> {
        let id = super::store_id(channel);
        if self.config.protocol == SessionProtocol::V2 && self.book.descriptor(channel).is_none() {
            // Without it the reserve cannot be read or closed: refuse (retryable) rather than
            // take the channel for closed and capture nothing.
            return Err(ChainError::new(ChainErrorKind::Rejected, "no descriptor for a v2 channel"));
        }
        let unavailable = |e| ChainError::new(ChainErrorKind::Unavailable, e);
        let mut state = store.finalize(&id).await.map_err(unavailable)?;
        // A drain too long to add to now (`Duration::MAX`) means no deadline.
        let deadline = tokio::time::Instant::now().checked_add(self.drain);
        while !state.reserved.is_zero() {
            let changed = store.changed(&id, state.version);
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, changed).await,
                None => Ok(changed.await),
            };
            match changed {
                Ok(changed) => state = changed.map_err(unavailable)?,
                Err(_) => break,
            }
        }
        // `reserved` is zero when the leases drained; what is left is counted as delivered.
        let delivered = state.spent.saturating_add(state.reserved).get();
        let descriptor = self.book.descriptor(channel);
        let on_chain = self.cache.refresh(&self.chain, &self.config, channel, descriptor.as_ref()).await?;
        if !on_chain.exists() || on_chain.finalized {
            self.forget(channel);
            return Ok((state, None));
        }
        let input = self.close_input(channel, delivered, &on_chain)?;
        let mined = self.chain.send(self.config.escrow, input.into()).await?;
        let escrow = self.config.escrow;
        let closed = mined.success
            && mined.logs.iter().filter(|log| log.address == escrow).any(|log| {
                let (topics, data) = (log.topics.iter().copied(), &log.data);
                IStreamChannelEscrow::ChannelClosed::decode_raw_log(topics.clone(), data)
                    .map(|e| e.channelId)
                    .or_else(|_| ITip20ChannelReserve::ChannelClosed::decode_raw_log(topics, data).map(|e| e.channelId))
                    .is_ok_and(|id| id == channel)
            });
        if !closed {
            self.cache.forget(channel);
            return Err(ChainError::new(ChainErrorKind::Rejected, "the close transaction failed"));
        }
        self.forget(channel);
        Ok((state, Some(mined.hash)))
    }

    /// The escrow call that closes `channel` capturing `delivered`, never above a voucher
    /// the payer signed.
    fn close_input(&self, channel: B256, delivered: u128, on_chain: &OnChainChannel) -> Result<Vec<u8>, ChainError> {
        let (settled, spent) = (on_chain.settled, delivered);
        Ok(match self.config.protocol {
            SessionProtocol::V1 => {
                let (amount, signature) = self.book.best(channel, settled, spent).unwrap_or((settled, Bytes::new()));
                IStreamChannelEscrow::closeCall { channelId: channel, cumulativeAmount: amount, signature }.abi_encode()
            }
            SessionProtocol::V2 => {
                let descriptor = self
                    .book
                    .descriptor(channel)
                    .ok_or_else(|| ChainError::new(ChainErrorKind::Rejected, "no descriptor for a v2 channel"))?;
                // Capture `spent`, bounded by the highest voucher; without one that covers
                // more than is settled, capture only what is settled (no signature needed).
                let (cumulative, capture, signature) = match self.book.highest(channel) {
                    Some((voucher, signature)) if voucher.min(spent) > settled => {
                        (voucher, voucher.min(spent), signature)
                    }
                    _ => (settled, settled, Bytes::new()),
                };
                let u96 = |v: u128| {
                    alloy::primitives::Uint::<96, 2>::try_from(v)
                        .map_err(|_| ChainError::new(ChainErrorKind::Rejected, "amount above uint96"))
                };
                ITip20ChannelReserve::closeCall {
                    descriptor: super::reserve_descriptor(&descriptor),
                    cumulativeAmount: u96(cumulative)?,
                    captureAmount: u96(capture)?,
                    signature,
                }
                .abi_encode()
            }
        })
    }

    /// Stops tracking a closed channel.
    pub(super) fn forget(&self, channel: B256) {
        self.book.forget(channel);
        self.cache.forget(channel);
    }
}
