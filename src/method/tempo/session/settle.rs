//! Server-driven settlement: capture delivered value on chain before the client closes.

use std::time::Duration;

use alloy::primitives::B256;
use alloy::sol_types::SolCall;

use super::{TempoSession, store_id};
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::{ChainError, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::store::ChannelStore;

/// When a channel is settled: once at least `min_amount` is capturable, checked every
/// `every`. The server pays the gas, so tiny settlements are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlementPolicy {
    /// How often channels are checked.
    pub every: Duration,
    /// The least capturable amount worth a transaction.
    pub min_amount: u128,
}

impl<C: TempoChain> TempoSession<C> {
    /// Settles `channel` with the highest accepted voucher that does not exceed what was
    /// delivered (`spent` in `store`). Returns the transaction hash, or `None` when there
    /// was nothing worth settling.
    pub async fn settle<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        min_amount: u128,
    ) -> Result<Option<B256>, ChainError> {
        let Ok(Some(state)) = store.load(&store_id(channel)).await else { return Ok(None) };
        let descriptor = self.book.descriptor(channel);
        let on_chain = self.cache.refresh(&self.chain, &self.config, channel, descriptor.as_ref()).await?;
        if !on_chain.exists() || on_chain.finalized {
            return Ok(None);
        }
        let Some((amount, signature)) = self.book.best(channel, on_chain.settled, state.spent.get()) else {
            return Ok(None);
        };
        if amount - on_chain.settled < min_amount.max(1) {
            return Ok(None);
        }
        let input = match (self.config.protocol, descriptor) {
            (SessionProtocol::V2, Some(d)) => {
                let Ok(amount) = alloy::primitives::Uint::<96, 2>::try_from(amount) else { return Ok(None) };
                ITip20ChannelReserve::settleCall {
                    descriptor: super::reserve_descriptor(&d),
                    cumulativeAmount: amount,
                    signature,
                }
                .abi_encode()
            }
            (SessionProtocol::V2, None) => return Ok(None),
            (SessionProtocol::V1, _) => {
                IStreamChannelEscrow::settleCall { channelId: channel, cumulativeAmount: amount, signature }
                    .abi_encode()
            }
        };
        let mined = self.chain.send(self.config.escrow, input.into()).await?;
        if mined.success {
            self.book.settled(channel, amount);
        }
        Ok(mined.success.then_some(mined.hash))
    }

    /// Runs [`settle`](TempoSession::settle) over every channel this process accepted
    /// vouchers for, every `policy.every`, until the returned task is aborted.
    pub fn spawn_settlement<St: ChannelStore + Clone>(
        self: std::sync::Arc<Self>,
        store: St,
        policy: SettlementPolicy,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(policy.every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                for channel in self.book.channels() {
                    // A failed settlement is retried on the next tick.
                    let _ = self.settle(&store, channel, policy.min_amount).await;
                }
            }
        })
    }
}
