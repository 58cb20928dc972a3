//! Closing a channel on chain: stop new delivery, let live streams finish, then capture
//! what was delivered. Shared by the `close` action and server-side closes (settlement).

use alloy::primitives::{B256, Bytes};
use alloy::sol_types::{SolCall, SolEvent};

use std::time::Duration;

use super::TempoSession;
use super::ladder::Ladder;
use super::lock::SettleLock;
use crate::method::tempo::chain::{ChainError, ChainErrorKind, OnChainChannel, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::method::tempo::{ChannelDescriptor, SessionProtocol};
use crate::store::{ChannelState, ChannelStore, StoreError};

impl<C: TempoChain> TempoSession<C> {
    /// Closes `channel`, capturing what it delivered, under the channel's settle lock
    /// (waiting for another instance's settlement or close of it to finish first).
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
        // Another instance's settlement or close of this channel finishes first (its close
        // drains for up to the same timeout); then this one sees what it did.
        let patience = self.drain.saturating_add(LOCK_PATIENCE);
        let lock = SettleLock::wait(store, channel, patience).await.map_err(unavailable)?.ok_or_else(busy)?;
        let since = crate::observe::channel_settlement_submitted("tempo");
        let closed = lock.during(self.capture_close(store, channel, &lock)).await;
        crate::observe::channel_settlement_done("tempo", since, closed.is_ok());
        lock.release().await;
        closed
    }

    /// [`close_channel`](Self::close_channel) once the channel's settle lock is held.
    pub(super) async fn capture_close<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        lock: &SettleLock<'_, St>,
    ) -> Result<(ChannelState, Option<B256>), ChainError> {
        let id = super::store_id(channel);
        let descriptor = self.book.descriptor(store, channel).await.map_err(unavailable)?;
        if self.config.protocol == SessionProtocol::V2 && descriptor.is_none() {
            // Without it the reserve cannot be read or closed: refuse (retryable) rather than
            // take the channel for closed and capture nothing.
            return Err(ChainError::new(ChainErrorKind::Rejected, "no descriptor for a v2 channel"));
        }
        let mut state = store.finalize(&id).await.map_err(unavailable)?;
        // A drain too long to add to now (`Duration::MAX`) means no deadline.
        let deadline = tokio::time::Instant::now().checked_add(self.drain);
        // A lease whose holder died lapses during the drain, but only a step on the channel
        // reclaims it, and nothing else steps on a closing channel: so the drain looks again
        // at least once per lease, or it would count that lease's whole reservation as
        // delivered at the deadline.
        let look_again = store.lease().max(Duration::from_millis(10));
        while !state.reserved.is_zero() {
            let now = tokio::time::Instant::now();
            let wake = now.checked_add(look_again).unwrap_or(now);
            let (wake, last) = match deadline {
                Some(deadline) if deadline <= wake => (deadline, true),
                _ => (wake, false),
            };
            match tokio::time::timeout_at(wake, store.changed(&id, state.version)).await {
                Ok(changed) => state = changed.map_err(unavailable)?,
                // Reclaims what lapsed meanwhile.
                Err(_) => {
                    state = store.load(&id).await.map_err(unavailable)?.ok_or_else(gone)?;
                    if last {
                        break;
                    }
                }
            }
        }
        // `reserved` is zero when the leases drained; what is left is counted as delivered.
        let delivered = state.spent.saturating_add(state.reserved).get();
        let on_chain = self.cache.refresh(&self.chain, &self.config, channel, descriptor.as_ref()).await?;
        if !on_chain.exists() || on_chain.finalized {
            self.forget(store, channel).await;
            return Ok((state, None));
        }
        let ladder = self.book.ladder(store, channel).await.map_err(unavailable)?;
        let input = self.close_input(channel, delivered, &on_chain, &ladder, descriptor.as_ref())?;
        // Right before sending: a holder that lost the lock (it lapsed while the store did
        // not answer) sends nothing; the new holder decides.
        if !lock.still_held().await.map_err(unavailable)? {
            return Err(busy());
        }
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
        self.forget(store, channel).await;
        Ok((state, Some(mined.hash)))
    }

    /// The escrow call that closes `channel` capturing `delivered`, never above a voucher
    /// the payer signed (`ladder`, the vouchers kept for it).
    fn close_input(
        &self,
        channel: B256,
        delivered: u128,
        on_chain: &OnChainChannel,
        ladder: &Ladder,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<Vec<u8>, ChainError> {
        let (settled, spent) = (on_chain.settled, delivered);
        Ok(match self.config.protocol {
            SessionProtocol::V1 => {
                let (amount, signature) = ladder.best(settled, spent).unwrap_or((settled, Bytes::new()));
                IStreamChannelEscrow::closeCall { channelId: channel, cumulativeAmount: amount, signature }.abi_encode()
            }
            SessionProtocol::V2 => {
                let descriptor = descriptor
                    .ok_or_else(|| ChainError::new(ChainErrorKind::Rejected, "no descriptor for a v2 channel"))?;
                // Capture `spent`, bounded by the highest voucher; without one that covers
                // more than is settled, capture only what is settled (no signature needed).
                let (cumulative, capture, signature) = match ladder.highest() {
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
                    descriptor: super::reserve_descriptor(descriptor),
                    cumulativeAmount: u96(cumulative)?,
                    captureAmount: u96(capture)?,
                    signature,
                }
                .abi_encode()
            }
        })
    }

    /// Stops tracking a channel closed on chain (in the store for every instance). A
    /// store that fails here leaves it listed: the next pass finds it closed and tries again.
    pub(super) async fn forget<St: ChannelStore>(&self, store: &St, channel: B256) {
        let _ = self.book.forget(store, channel).await;
        self.cache.forget(channel);
        self.activity.forget(channel);
    }
}

/// How much longer than the drain timeout a close waits for another holder of its lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

fn unavailable(e: StoreError) -> ChainError {
    ChainError::new(ChainErrorKind::Unavailable, e)
}

/// The channel vanished from the store while it was being closed.
fn gone() -> ChainError {
    ChainError::new(ChainErrorKind::Unavailable, "the channel is no longer in the store")
}

/// Another settlement or close of the channel is under way (here or on another instance).
pub(super) fn busy() -> ChainError {
    ChainError::new(ChainErrorKind::Unavailable, "another settlement or close of this channel is under way")
}
