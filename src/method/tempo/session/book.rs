//! What the session method remembers between requests, per process: the vouchers it
//! accepted (for settlement) and a short-lived cache of on-chain channel state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, Bytes};

use crate::method::tempo::chain::{ChainError, OnChainChannel, TempoChain};
use crate::method::tempo::{ChannelDescriptor, SessionConfig, SessionProtocol};

/// Accepted vouchers per channel, so a settlement can pick one that never captures more
/// than was delivered; and v2 channel descriptors, which the reserve needs on every call.
#[derive(Debug, Default)]
pub(crate) struct VoucherBook {
    vouchers: Mutex<HashMap<B256, BTreeMap<u128, Bytes>>>,
    descriptors: Mutex<HashMap<B256, ChannelDescriptor>>,
}

impl VoucherBook {
    pub(crate) fn remember(&self, channel: B256, descriptor: ChannelDescriptor) {
        self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).insert(channel, descriptor);
    }

    pub(crate) fn descriptor(&self, channel: B256) -> Option<ChannelDescriptor> {
        self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).get(&channel).copied()
    }

    pub(crate) fn record(&self, channel: B256, cumulative: u128, signature: Bytes) {
        let mut vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        vouchers.entry(channel).or_default().insert(cumulative, signature);
    }

    /// The highest voucher at or below `limit` and above `settled`.
    pub(crate) fn best(&self, channel: B256, settled: u128, limit: u128) -> Option<(u128, Bytes)> {
        let vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        let book = vouchers.get(&channel)?;
        book.range(settled.saturating_add(1)..=limit).next_back().map(|(amount, sig)| (*amount, sig.clone()))
    }

    /// Forgets vouchers at or below `settled` (they can never be used again).
    pub(crate) fn settled(&self, channel: B256, settled: u128) {
        let mut vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(book) = vouchers.get_mut(&channel) {
            *book = book.split_off(&settled.saturating_add(1));
        }
    }

    pub(crate) fn channels(&self) -> Vec<B256> {
        self.vouchers.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }
}

/// On-chain channel reads, cached for a short TTL (the reference server re-reads every 5 s
/// because a read per voucher hits RPC rate limits).
#[derive(Debug)]
pub(crate) struct ChannelCache {
    ttl: Duration,
    entries: Mutex<HashMap<B256, (Instant, OnChainChannel)>>,
}

impl ChannelCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        ChannelCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub(crate) async fn get<C: TempoChain>(
        &self,
        chain: &C,
        config: &SessionConfig,
        id: B256,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<OnChainChannel, ChainError> {
        let cached = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.get(&id).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, c)| c.clone())
        };
        match cached {
            Some(channel) => Ok(channel),
            None => self.refresh(chain, config, id, descriptor).await,
        }
    }

    /// Reads the channel: v1 from the escrow; v2 from the reserve, with the parties taken
    /// from the descriptor (which hashes to the channel id, so it cannot lie about them).
    pub(crate) async fn refresh<C: TempoChain>(
        &self,
        chain: &C,
        config: &SessionConfig,
        id: B256,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<OnChainChannel, ChainError> {
        let channel = match config.protocol {
            SessionProtocol::V1 => chain.channel(config.escrow, id).await?,
            SessionProtocol::V2 => {
                let state = chain.reserve_state(config.escrow, id).await?;
                match descriptor {
                    Some(d) if state.deposit > 0 => OnChainChannel {
                        finalized: false,
                        close_requested_at: state.close_requested_at,
                        payer: d.payer,
                        payee: d.payee,
                        token: d.token,
                        authorized_signer: d.authorized_signer,
                        deposit: state.deposit,
                        settled: state.settled,
                    },
                    _ => OnChainChannel::default(),
                }
            }
        };
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (Instant::now(), channel.clone()));
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_voucher_never_exceeds_the_limit() {
        let book = VoucherBook::default();
        let id = B256::repeat_byte(1);
        for amount in [10u128, 30, 60, 90] {
            book.record(id, amount, Bytes::from(vec![amount as u8]));
        }
        assert_eq!(book.best(id, 0, 75).map(|(a, _)| a), Some(60));
        assert_eq!(book.best(id, 60, 75), None, "nothing above what is settled");
        assert_eq!(book.best(id, 0, 5), None);
        book.settled(id, 30);
        assert_eq!(book.best(id, 0, 100).map(|(a, _)| a), Some(90));
        assert_eq!(book.best(id, 0, 40), None, "settled vouchers are forgotten");
    }
}
