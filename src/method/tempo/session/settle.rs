//! Server-driven settlement: capture delivered value on chain before the client closes.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use alloy::sol_types::SolCall;

use super::lock::SettleLock;
use super::{TempoSession, store_id};
use crate::method::tempo::SessionProtocol;
use crate::method::tempo::chain::{ChainError, ChainErrorKind, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::store::{ChannelStore, StoreError};

/// When a channel is settled: once at least `min_amount` is capturable, checked every
/// `every`. The server pays the gas, so tiny settlements are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlementPolicy {
    /// How often channels are checked.
    pub every: Duration,
    /// The least capturable amount worth a transaction.
    pub min_amount: u128,
}

/// What one settlement pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SettlementReport {
    /// Channels looked at.
    pub polled: usize,
    /// Channels settled on chain: (channel, transaction).
    pub settled: Vec<(B256, B256)>,
    /// Channels the server closed itself (a close pending on chain, a close that failed
    /// earlier, or an idle v2 channel): (channel, transaction, or `None` when it was
    /// already closed).
    pub closed: Vec<(B256, Option<B256>)>,
    /// Channels whose settlement failed (retried on the next pass).
    pub failures: Vec<(B256, ChainError)>,
    /// Channels another settlement or close was capturing (on this instance or another
    /// sharing the store): left to it this pass.
    pub busy: Vec<B256>,
    /// Why the pass polled nothing: the store could not list the channels to settle.
    pub unlisted: Option<StoreError>,
}

/// What [`TempoSession::settle_channel`] did.
enum Outcome {
    Nothing,
    Busy,
    Settled(B256),
    Closed(Option<B256>),
}

impl<C: TempoChain> TempoSession<C> {
    /// Settles `channel` with the highest accepted voucher that does not exceed what was
    /// delivered (`spent` in `store`). Returns the transaction hash, or `None` when there
    /// was nothing worth settling, when another settlement or close of the channel was
    /// under way (on any instance sharing `store`), or when the channel was closed instead
    /// (see [`settle_all`](TempoSession::settle_all)).
    pub async fn settle<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        min_amount: u128,
    ) -> Result<Option<B256>, ChainError> {
        match self.settle_channel(store, channel, min_amount).await? {
            Outcome::Settled(tx) => Ok(Some(tx)),
            Outcome::Nothing | Outcome::Busy | Outcome::Closed(_) => Ok(None),
        }
    }

    /// Settles or closes `channel` under its settle lock: another instance (or task)
    /// capturing it already means this pass leaves it alone.
    async fn settle_channel<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        min_amount: u128,
    ) -> Result<Outcome, ChainError> {
        let Some(lock) = SettleLock::take(store, channel).await.map_err(unavailable)? else {
            return Ok(Outcome::Busy);
        };
        let outcome = lock.during(self.settle_locked(store, channel, min_amount, &lock)).await;
        lock.release().await;
        outcome
    }

    async fn settle_locked<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        min_amount: u128,
        lock: &SettleLock<'_, St>,
    ) -> Result<Outcome, ChainError> {
        let state = store.load(&store_id(channel)).await.map_err(unavailable)?;
        let descriptor = self.book.descriptor(store, channel).await.map_err(unavailable)?;
        let on_chain = self.cache.refresh(&self.chain, &self.config, channel, descriptor.as_ref()).await?;
        if !on_chain.exists() || on_chain.finalized {
            // Closed (or never ours on this chain): nothing left to capture, stop polling.
            self.forget(store, channel).await;
            return Ok(Outcome::Nothing);
        }
        let Some(state) = state else {
            // Listed and mined, not in the store yet: an open in flight on some instance.
            return Ok(Outcome::Nothing);
        };
        // A close that failed earlier (the store says closing), or the payer asked the
        // escrow for a forced close: close from the server side now, capturing what was
        // delivered, before the payer can withdraw.
        let idle = self.config.protocol == SessionProtocol::V2
            && state.reserved.is_zero()
            && state.spent.get() > on_chain.settled
            && self.idle.is_some_and(|after| self.activity.unchanged_for(channel, state.version) >= after);
        if state.finalized || on_chain.close_requested_at != 0 || idle {
            let (_, tx) = self.capture_close(store, channel, lock).await?;
            return Ok(Outcome::Closed(tx));
        }
        // Vouchers that delivery or settlement made useless go first.
        let spent = state.spent.get();
        let ladder = self.book.trim(store, channel, on_chain.settled, spent).await.map_err(unavailable)?;
        let Some((amount, signature)) = ladder.best(on_chain.settled, spent) else {
            return Ok(Outcome::Nothing);
        };
        if amount.saturating_sub(on_chain.settled) < min_amount.max(1) {
            return Ok(Outcome::Nothing);
        }
        let input = match (self.config.protocol, descriptor) {
            (SessionProtocol::V2, Some(d)) => {
                let Ok(amount) = alloy::primitives::Uint::<96, 2>::try_from(amount) else {
                    return Ok(Outcome::Nothing);
                };
                ITip20ChannelReserve::settleCall {
                    descriptor: super::reserve_descriptor(&d),
                    cumulativeAmount: amount,
                    signature,
                }
                .abi_encode()
            }
            (SessionProtocol::V2, None) => return Ok(Outcome::Nothing),
            (SessionProtocol::V1, _) => {
                IStreamChannelEscrow::settleCall { channelId: channel, cumulativeAmount: amount, signature }
                    .abi_encode()
            }
        };
        // Right before sending: a lock lost meanwhile means skipping this pass.
        if !lock.still_held().await.map_err(unavailable)? {
            return Ok(Outcome::Busy);
        }
        let since = crate::observe::channel_settlement_submitted("tempo");
        let mined = self.chain.send(self.config.escrow, input.into()).await;
        self.cache.forget(channel);
        crate::observe::channel_settlement_done("tempo", since, mined.as_ref().is_ok_and(|m| m.success));
        let mined = mined?;
        if !mined.success {
            return Err(ChainError::new(ChainErrorKind::Rejected, "the settle transaction reverted"));
        }
        // Housekeeping: the settlement stands whether or not the store answers.
        let _ = self.book.trim(store, channel, amount, spent).await;
        Ok(Outcome::Settled(mined.hash))
    }

    /// One settlement pass over every channel the store lists for this method (whichever
    /// instance opened it), one channel at a time: a failing channel is reported and the
    /// others still run. A channel another instance is capturing is left to it.
    pub async fn settle_all<St: ChannelStore>(&self, store: &St, min_amount: u128) -> SettlementReport {
        let mut report = SettlementReport::default();
        let channels = match self.book.channels(store).await {
            Ok(channels) => channels,
            Err(e) => {
                report.unlisted = Some(e);
                return report;
            }
        };
        for channel in channels {
            report.polled += 1;
            let outcome = self.settle_channel(store, channel, min_amount).await;
            record(&mut report, channel, outcome);
        }
        report
    }

    /// Runs [`settle_all`](TempoSession::settle_all) every `policy.every` until the
    /// returned task is aborted. Failures are retried on the next pass.
    pub fn spawn_settlement<St: ChannelStore + Clone>(
        self: Arc<Self>,
        store: St,
        policy: SettlementPolicy,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_settlement_reporting(store, policy, |_| {})
    }

    /// As [`spawn_settlement`](TempoSession::spawn_settlement), handing each pass's
    /// report to `report` (to log failures, for instance). Each channel is settled in its
    /// own task, so not even a bug in one channel's settlement stops the others.
    pub fn spawn_settlement_reporting<St: ChannelStore + Clone>(
        self: Arc<Self>,
        store: St,
        policy: SettlementPolicy,
        mut report: impl FnMut(SettlementReport) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(policy.every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let mut pass = SettlementReport::default();
                let channels = match self.book.channels(&store).await {
                    Ok(channels) => channels,
                    Err(e) => {
                        pass.unlisted = Some(e);
                        Vec::new()
                    }
                };
                for channel in channels {
                    pass.polled += 1;
                    let (this, store) = (self.clone(), store.clone());
                    let task =
                        tokio::spawn(async move { this.settle_channel(&store, channel, policy.min_amount).await });
                    let outcome = task.await.unwrap_or_else(|e| {
                        Err(ChainError::new(ChainErrorKind::Rejected, format!("settlement task failed: {e}")))
                    });
                    record(&mut pass, channel, outcome);
                }
                report(pass);
            }
        })
    }
}

fn record(report: &mut SettlementReport, channel: B256, outcome: Result<Outcome, ChainError>) {
    match outcome {
        Ok(Outcome::Nothing) => {}
        Ok(Outcome::Busy) => report.busy.push(channel),
        Ok(Outcome::Settled(tx)) => report.settled.push((channel, tx)),
        Ok(Outcome::Closed(tx)) => report.closed.push((channel, tx)),
        Err(e) => report.failures.push((channel, e)),
    }
}

fn unavailable(e: StoreError) -> ChainError {
    ChainError::new(ChainErrorKind::Unavailable, e)
}
