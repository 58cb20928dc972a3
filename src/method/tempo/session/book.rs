//! [`VoucherBook`]: what settlement needs, kept in the channel store.
//!
//! A restarted instance, or another one sharing the store, must be able to settle and
//! close every channel: so the accepted vouchers (the ladder a v1 settlement picks from)
//! and the v2 descriptors live on store shelves, never only in memory. What stays in
//! memory is safe to lose: the on-chain read cache ([`ChannelCache`](super::cache::ChannelCache))
//! and idle timestamps ([`Activity`](super::activity::Activity)).

use alloy::primitives::{B256, Bytes};

use super::ladder::Ladder;
use super::store_id;
use crate::amount::Amount;
use crate::method::tempo::{ChannelDescriptor, SessionConfig};
use crate::store::{ChannelStore, StoreError};

/// The one key of a channel's entry on the channel shelf.
const ENTRY: Amount = Amount::ZERO;

/// Two shelves per session method (named after its chain and escrow, so methods for
/// different escrows sharing a store never settle each other's channels):
///
/// - *vouchers*: each accepted voucher, keyed by its cumulative amount, the signature as
///   value. Bounded per channel by [`Ladder::trimmed`].
/// - *channels*: one entry per channel to settle, written once it was checked (a mined
///   open, a signed voucher, a mined top-up), never from unverified input, so an outsider
///   cannot grow the store. v1: empty; v2: the channel's descriptor (the reserve needs it
///   on every call), as JSON.
///
/// Both go when the channel is closed on chain.
#[derive(Debug)]
pub(crate) struct VoucherBook {
    vouchers: String,
    channels: String,
}

impl VoucherBook {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        let prefix = format!("tempo-session:{}:{:#x}", config.chain_id, config.escrow);
        VoucherBook { vouchers: format!("{prefix}:vouchers"), channels: format!("{prefix}:channels") }
    }

    /// Lists `channel` for settlement (v1: no descriptor). Call only once it was checked.
    pub(crate) async fn track<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<(), StoreError> {
        let value = match descriptor {
            Some(d) => serde_json::to_vec(d).map_err(StoreError::backend)?,
            None => Vec::new(),
        };
        store.keep(&store_id(channel), &self.channels, ENTRY, Bytes::from(value).0).await
    }

    /// Keeps a v2 descriptor checked against the id and a signature (or a mined
    /// transaction), unless the store has it already: one read, a write the first time.
    pub(crate) async fn remember<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        descriptor: &ChannelDescriptor,
    ) -> Result<(), StoreError> {
        if self.descriptor(store, channel).await?.as_ref() == Some(descriptor) {
            return Ok(());
        }
        self.track(store, channel, Some(descriptor)).await
    }

    /// The stored v2 descriptor of `channel`.
    pub(crate) async fn descriptor<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
    ) -> Result<Option<ChannelDescriptor>, StoreError> {
        let kept = store.kept(&store_id(channel), &self.channels).await?;
        match kept.into_iter().find(|(key, _)| *key == ENTRY) {
            Some((_, value)) if !value.is_empty() => {
                // Only checked descriptors are written: one that does not parse is a broken
                // store, refused rather than taken for a channel without one.
                serde_json::from_slice(&value).map(Some).map_err(StoreError::backend)
            }
            _ => Ok(None),
        }
    }

    /// The channel's accepted vouchers as the store has them now.
    pub(crate) async fn ladder<St: ChannelStore>(&self, store: &St, channel: B256) -> Result<Ladder, StoreError> {
        let kept = store.kept(&store_id(channel), &self.vouchers).await?;
        Ok(Ladder::new(kept.into_iter().map(|(amount, signature)| (amount.get(), Bytes::from(signature)))))
    }

    /// Keeps an accepted voucher. Call before the store accepts it and before anything is
    /// answered or served: what the payer was served for is then always capturable.
    pub(crate) async fn record<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        cumulative: u128,
        signature: Bytes,
    ) -> Result<(), StoreError> {
        store.keep(&store_id(channel), &self.vouchers, Amount::new(cumulative), signature.0).await
    }

    /// Reads the ladder and drops what it shows dead or in excess, by [`Ladder::trimmed`]'s
    /// rules (which stay safe when instances race): after a voucher was kept, after a
    /// settlement, before picking a voucher. Read after the last keep, so the bound holds
    /// once a voucher storm stops. Returns what is left.
    pub(crate) async fn trim<St: ChannelStore>(
        &self,
        store: &St,
        channel: B256,
        settled: u128,
        spent: u128,
    ) -> Result<Ladder, StoreError> {
        let mut ladder = self.ladder(store, channel).await?;
        let dead = ladder.trimmed(settled, spent);
        if !dead.is_empty() {
            let keys: Vec<Amount> = dead.iter().copied().map(Amount::new).collect();
            store.discard(&store_id(channel), &self.vouchers, Some(&keys)).await?;
            ladder = Ladder::new(ladder.into_entries().filter(|(amount, _)| !dead.contains(amount)));
        }
        Ok(ladder)
    }

    /// The channels to settle: every one listed or with a voucher kept.
    pub(crate) async fn channels<St: ChannelStore>(&self, store: &St) -> Result<Vec<B256>, StoreError> {
        let mut ids = store.shelved(&self.channels).await?;
        ids.extend(store.shelved(&self.vouchers).await?);
        let mut channels: Vec<B256> = ids.iter().filter_map(|id| id.as_str().parse().ok()).collect();
        channels.sort_unstable();
        channels.dedup();
        Ok(channels)
    }

    /// Drops everything kept for a channel closed on chain.
    pub(crate) async fn forget<St: ChannelStore>(&self, store: &St, channel: B256) -> Result<(), StoreError> {
        let id = store_id(channel);
        store.discard(&id, &self.vouchers, None).await?;
        store.discard(&id, &self.channels, None).await
    }

    /// Counts what the store keeps for this method.
    pub(crate) async fn remembered<St: ChannelStore>(&self, store: &St) -> Result<Remembered, StoreError> {
        let channels = self.channels(store).await?;
        let mut remembered = Remembered { channels: channels.len(), ..Remembered::default() };
        for channel in channels {
            remembered.vouchers += self.ladder(store, channel).await?.len();
            if self.descriptor(store, channel).await?.is_some() {
                remembered.descriptors += 1;
            }
        }
        Ok(remembered)
    }
}

/// What a session method keeps in the store for settlement (see
/// [`TempoSession::remembered`](super::TempoSession::remembered)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Remembered {
    /// Channels to settle (polled by the settlement loop).
    pub channels: usize,
    /// v2 channel descriptors.
    pub descriptors: usize,
    /// Accepted vouchers kept for settlement.
    pub vouchers: usize,
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;

    use super::*;
    use crate::store::MemoryStore;

    fn book(escrow: u8) -> VoucherBook {
        let config =
            SessionConfig::v1(1, Address::repeat_byte(escrow), Address::repeat_byte(2), Address::repeat_byte(3));
        VoucherBook::new(&config)
    }

    #[tokio::test]
    async fn methods_for_two_escrows_on_one_store_keep_apart() {
        let store = MemoryStore::new();
        let (first, second) = (book(1), book(9));
        let channel = B256::repeat_byte(7);
        first.track(&store, channel, None).await.unwrap();
        first.record(&store, channel, 1_000, Bytes::from_static(b"sig")).await.unwrap();
        assert_eq!(first.channels(&store).await.unwrap(), vec![channel]);
        assert!(second.channels(&store).await.unwrap().is_empty(), "never settled by the other escrow's method");
        // A second instance of the same method finds it all.
        let again = book(1);
        assert_eq!(again.ladder(&store, channel).await.unwrap().highest().map(|(a, _)| a), Some(1_000));
        assert_eq!(again.descriptor(&store, channel).await.unwrap(), None, "v1 keeps no descriptor");
        again.forget(&store, channel).await.unwrap();
        assert_eq!(first.remembered(&store).await.unwrap(), Remembered::default());
    }

    #[tokio::test]
    async fn a_descriptor_is_written_once_and_read_back() {
        let store = MemoryStore::new();
        let book = book(1);
        let channel = B256::repeat_byte(8);
        let descriptor = ChannelDescriptor { payer: Address::repeat_byte(4), ..ChannelDescriptor::default() };
        book.remember(&store, channel, &descriptor).await.unwrap();
        book.remember(&store, channel, &descriptor).await.unwrap();
        assert_eq!(book.descriptor(&store, channel).await.unwrap(), Some(descriptor));
        let remembered = book.remembered(&store).await.unwrap();
        assert_eq!((remembered.channels, remembered.descriptors, remembered.vouchers), (1, 1, 0));
    }
}
