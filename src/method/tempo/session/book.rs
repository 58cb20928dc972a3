//! What the session method remembers between requests, per process: the vouchers it
//! accepted (for settlement) and a short-lived cache of on-chain channel state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, Bytes};

use crate::method::tempo::chain::{ChainError, OnChainChannel, TempoChain};
use crate::method::tempo::{ChannelDescriptor, SessionConfig, SessionProtocol};

/// The most vouchers kept per channel. Beyond it the book thins the run above delivery
/// (see [`VoucherBook::record`]); an honest stream keeps a handful.
pub(super) const MAX_VOUCHERS: usize = 256;

/// Accepted vouchers per channel, so a settlement can pick one that never captures more
/// than was delivered; and v2 channel descriptors, which the reserve needs on every call.
///
/// Only what settlement can still use is kept: the highest voucher at or below what was
/// delivered (`spent` only grows, so lower ones are dead) and the ones above it. Channels
/// leave the book when they close.
#[derive(Debug, Default)]
pub(crate) struct VoucherBook {
    vouchers: Mutex<HashMap<B256, BTreeMap<u128, Bytes>>>,
    descriptors: Mutex<HashMap<B256, ChannelDescriptor>>,
    /// The store version last seen per channel and since when (idle detection).
    activity: Mutex<HashMap<B256, (u64, tokio::time::Instant)>>,
}

impl VoucherBook {
    /// Remembers a v2 descriptor. Call only once it was checked against a signature or a
    /// mined open: an outsider must not be able to make the book grow.
    pub(crate) fn remember(&self, channel: B256, descriptor: ChannelDescriptor) {
        self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).insert(channel, descriptor);
    }

    pub(crate) fn descriptor(&self, channel: B256) -> Option<ChannelDescriptor> {
        self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).get(&channel).copied()
    }

    /// Records an accepted voucher, then drops what `spent` made useless.
    ///
    /// When more than [`MAX_VOUCHERS`] remain, the voucher whose neighbours are closest is
    /// dropped (never the lowest or the highest), so the gaps stay as even as they can.
    pub(crate) fn record(&self, channel: B256, cumulative: u128, signature: Bytes, spent: u128) {
        let mut vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        let book = vouchers.entry(channel).or_default();
        book.insert(cumulative, signature);
        prune(book, spent);
        if book.len() > MAX_VOUCHERS {
            thin(book);
        }
    }

    /// How many vouchers are kept above `spent` (what a payer has signed ahead of delivery).
    pub(crate) fn ahead_of(&self, channel: B256, spent: u128) -> usize {
        let vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        vouchers.get(&channel).map_or(0, |book| book.range((Bound::Excluded(spent), Bound::Unbounded)).count())
    }

    /// The highest voucher at or below `limit` and above `settled`.
    pub(crate) fn best(&self, channel: B256, settled: u128, limit: u128) -> Option<(u128, Bytes)> {
        if limit <= settled {
            return None;
        }
        let vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        let book = vouchers.get(&channel)?;
        book.range((Bound::Excluded(settled), Bound::Included(limit)))
            .next_back()
            .map(|(amount, sig)| (*amount, sig.clone()))
    }

    /// The highest voucher accepted.
    pub(crate) fn highest(&self, channel: B256) -> Option<(u128, Bytes)> {
        let vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        vouchers.get(&channel)?.last_key_value().map(|(amount, sig)| (*amount, sig.clone()))
    }

    /// Drops what can no longer be captured: vouchers at or below `settled`, and those
    /// below the best one at or below `spent`.
    pub(crate) fn settled(&self, channel: B256, settled: u128, spent: u128) {
        let mut vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(book) = vouchers.get_mut(&channel) {
            *book = book.split_off(&settled.saturating_add(1));
            prune(book, spent);
        }
    }

    /// How long the channel's store state has stayed at `version` (zero when it just
    /// moved).
    pub(crate) fn unchanged_for(&self, channel: B256, version: u64) -> std::time::Duration {
        let mut activity = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        let seen = activity.entry(channel).or_insert((version, now));
        if seen.0 != version {
            *seen = (version, now);
        }
        now.saturating_duration_since(seen.1)
    }

    /// Forgets a channel (closed, or gone from the chain).
    pub(crate) fn forget(&self, channel: B256) {
        self.activity.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
        self.vouchers.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
        self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
    }

    pub(crate) fn remembered(&self) -> Remembered {
        let vouchers = self.vouchers.lock().unwrap_or_else(|e| e.into_inner());
        let descriptors = self.descriptors.lock().unwrap_or_else(|e| e.into_inner());
        let mut channels: HashSet<B256> = vouchers.keys().copied().collect();
        channels.extend(descriptors.keys().copied());
        Remembered {
            channels: channels.len(),
            descriptors: descriptors.len(),
            vouchers: vouchers.values().map(BTreeMap::len).sum(),
        }
    }

    /// The channels to settle: every one with a voucher or a descriptor.
    pub(crate) fn channels(&self) -> Vec<B256> {
        let mut channels: HashSet<B256> =
            self.vouchers.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        channels.extend(self.descriptors.lock().unwrap_or_else(|e| e.into_inner()).keys().copied());
        channels.into_iter().collect()
    }
}

/// Keeps the highest voucher at or below `spent` and everything above it.
fn prune(book: &mut BTreeMap<u128, Bytes>, spent: u128) {
    if let Some((&floor, _)) = book.range(..=spent).next_back() {
        *book = book.split_off(&floor);
    }
}

/// Drops the interior voucher whose neighbours are closest together.
fn thin(book: &mut BTreeMap<u128, Bytes>) {
    let keys: Vec<u128> = book.keys().copied().collect();
    let victim = keys
        .windows(3)
        .filter_map(|w| match w {
            [before, at, after] => Some((after.saturating_sub(*before), *at)),
            _ => None,
        })
        .min()
        .map(|(_, at)| at);
    if let Some(at) = victim {
        book.remove(&at);
    }
}

/// What a session method keeps in memory (see [`TempoSession::remembered`](super::TempoSession::remembered)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Remembered {
    /// Channels tracked (polled by the settlement loop).
    pub channels: usize,
    /// v2 channel descriptors.
    pub descriptors: usize,
    /// Accepted vouchers kept for settlement.
    pub vouchers: usize,
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

    pub(crate) fn forget(&self, id: B256) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
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
    fn best_voucher_never_exceeds_the_limit_and_never_panics() {
        let book = VoucherBook::default();
        let id = B256::repeat_byte(1);
        for amount in [10u128, 30, 60, 90] {
            book.record(id, amount, Bytes::from(vec![amount as u8]), 0);
        }
        assert_eq!(book.best(id, 0, 75).map(|(a, _)| a), Some(60));
        assert_eq!(book.best(id, 60, 75), None, "nothing above what is settled");
        assert_eq!(book.best(id, 0, 5), None);
        assert_eq!(book.best(id, 90, 0), None, "spent below settled");
        assert_eq!(book.best(id, 0, 0), None);
        book.settled(id, 30, 30);
        assert_eq!(book.best(id, 0, 100).map(|(a, _)| a), Some(90));
        assert_eq!(book.best(id, 0, 40), None, "settled vouchers are forgotten");
    }

    #[test]
    fn only_the_floor_and_what_is_above_delivery_are_kept() {
        let book = VoucherBook::default();
        let id = B256::repeat_byte(2);
        for amount in 1..=100u128 {
            book.record(id, amount, Bytes::new(), amount.saturating_sub(2));
        }
        assert_eq!(book.remembered().vouchers, 3, "98 (floor), 99, 100");
        for amount in 101..=1_000u128 {
            book.record(id, amount, Bytes::new(), 0);
        }
        assert_eq!(book.remembered().vouchers, MAX_VOUCHERS);
        assert_eq!(book.highest(id).map(|(a, _)| a), Some(1_000));
        assert_eq!(book.best(id, 0, 98).map(|(a, _)| a), Some(98), "the floor is kept");
        book.forget(id);
        assert_eq!(book.remembered(), Remembered::default());
    }
}
