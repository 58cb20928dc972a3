//! The domain types a [`ChannelStore`](super::ChannelStore) speaks.

use std::fmt;
use std::sync::Arc;

use crate::amount::Amount;
use crate::error::BoxError;

/// A channel's key: an MPP channel id (lowercased `0x…` hex), a payer address, an
/// authorization hash. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(Arc<str>);

impl ChannelId {
    /// A channel id; ASCII letters are lowercased so hex ids compare case-insensitively.
    pub fn new(id: impl AsRef<str>) -> Self {
        ChannelId(Arc::from(id.as_ref().to_ascii_lowercase()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// What the payer has paid for so far (the highest accepted cumulative voucher).
    pub accepted: Amount,
    /// The ceiling `accepted` may reach (the on-chain deposit of a payment channel).
    pub deposit: Amount,
    /// What delivered responses have used, committed.
    pub spent: Amount,
    /// Headroom set aside by responses still streaming (not yet committed).
    pub reserved: Amount,
    /// Units delivered over the channel's life.
    pub units: u64,
    /// The highest cumulative amount a live stream has asked the payer to sign (a
    /// `payment-need-voucher`, see [`ask`](super::ChannelStore::ask)); zero when no ask is
    /// live. A payment method may accept a voucher up to it even when it runs far ahead
    /// of delivery.
    pub asked: Amount,
    /// Whether the channel is closed (or closing) and takes no more payments.
    pub finalized: bool,
    /// Bumped by every change; [`changed`](super::ChannelStore::changed) waits on it.
    pub version: u64,
}

impl ChannelState {
    /// `accepted − spent − reserved`: what a new reservation could take.
    pub fn available(&self) -> Amount {
        self.accepted.saturating_sub(self.spent).saturating_sub(self.reserved)
    }
}

/// What a [`credit`](super::ChannelStore::credit) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credited {
    /// The channel after the credit (or as it is, when the reference was already claimed).
    pub state: ChannelState,
    /// `true` when this call claimed the reference and credited the amount; `false` when
    /// the reference had been claimed before (an idempotent retry: nothing changed).
    pub fresh: bool,
}

/// The most usage records a store keeps per channel (the oldest go first).
pub const MAX_USAGE_RECORDS: usize = 1000;

/// The usage record a reclaim appends for a reservation taken with
/// [`reserve_recording`](super::ChannelStore::reserve_recording): `head`, then the units
/// and the cost (decimal text) the reclaim charged, marked `"reclaimed":true`. Every
/// backend writes these same bytes.
///
/// ```
/// use tollgate::Amount;
/// use tollgate::store::reclaimed_record;
///
/// let record = reclaimed_record(br#"{"path":"/v1/chat""#, Amount::new(7), 3);
/// assert_eq!(record, br#"{"path":"/v1/chat","units":3,"cost":"7","reclaimed":true}"#);
/// ```
pub fn reclaimed_record(head: &[u8], used: Amount, units: u64) -> Vec<u8> {
    let tail = format!(r#","units":{units},"cost":"{used}","reclaimed":true}}"#);
    [head, tail.as_bytes()].concat()
}

/// Who asked (one paused stream): each stream's ask is kept apart, so the stream can
/// withdraw its own when it no longer waits, without touching another stream's ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AskId(pub u64);

impl AskId {
    /// A fresh id, unique across this process's streams and, with overwhelming
    /// probability, across instances sharing a store (a random per-process start).
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static START: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let start = *START.get_or_init(|| std::collections::hash_map::RandomState::new().build_hasher().finish());
        AskId(start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Default for AskId {
    fn default() -> Self {
        AskId::new()
    }
}

/// Who holds a [`lock`](super::ChannelStore::lock): one per process and job, unique across
/// instances sharing a store with overwhelming probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockHolder(pub u64);

impl LockHolder {
    /// A fresh holder id.
    pub fn new() -> Self {
        LockHolder(AskId::new().0)
    }
}

impl Default for LockHolder {
    fn default() -> Self {
        LockHolder::new()
    }
}

/// How long a reservation lives without renewal unless a store is told otherwise: long
/// enough for a holder that renews every few seconds, short enough that a crashed
/// instance's holds come back within a minute.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The store-assigned id of one reservation, unique per store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

/// Headroom set aside for one response. Hand it back to the store through
/// [`release`](super::ChannelStore::release), exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The channel it draws on.
    pub channel: ChannelId,
    /// The store's id for it.
    pub id: ReservationId,
    /// How much it holds in total (committed part included).
    pub amount: Amount,
}

/// Why a store refused or failed.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<BoxError>,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind) -> Self {
        StoreError { kind, source: None }
    }

    /// A backend failure (connection lost, script error, …).
    pub fn backend(source: impl Into<BoxError>) -> Self {
        StoreError { kind: StoreErrorKind::Backend, source: Some(source.into()) }
    }

    /// What went wrong.
    pub fn kind(&self) -> &StoreErrorKind {
        &self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StoreErrorKind::NotFound => f.write_str("channel or reservation not found"),
            StoreErrorKind::Exists => f.write_str("channel already exists"),
            StoreErrorKind::Finalized => f.write_str("channel is finalized"),
            StoreErrorKind::Insufficient { available } => write!(f, "insufficient headroom: {available} available"),
            StoreErrorKind::Invalid => f.write_str("invalid store operation"),
            StoreErrorKind::Backend => match &self.source {
                Some(source) => write!(f, "store backend failed: {source}"),
                None => f.write_str("store backend failed"),
            },
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// The kind of a [`StoreError`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The channel (or reservation) does not exist.
    NotFound,
    /// [`create`](super::ChannelStore::create) found the channel already there.
    Exists,
    /// The channel is closed.
    Finalized,
    /// Less than the minimum asked for is available.
    Insufficient {
        /// What was available.
        available: Amount,
    },
    /// The operation would break an invariant (commit above the reservation, accepted
    /// above the deposit, an overflow).
    Invalid,
    /// The backend failed; the operation may not have happened.
    Backend,
}
