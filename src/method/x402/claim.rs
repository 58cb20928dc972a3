//! Replay protection across instances: a verified authorization is claimed in the store,
//! atomically, and the claim is the one-shot account the response draws on.
//!
//! The claim is a store channel made with [`ChannelStore::create_lapsing`], funded with the
//! signed value: of several requests (on any instance sharing the store) carrying the same
//! authorization exactly one gets it. It is taken last, after every other check passed, so
//! a refused payment leaves nothing in the store.
//!
//! A Permit's claim is keyed by the owner's nonce, which a client reads from the token: a
//! permit that settled nothing (nothing was delivered, so nothing was sent) leaves that
//! nonce the owner's next, and the client's next permit carries it again. Such a claim is
//! void, and the next permit takes the next round of it (`<claim>/1`, `<claim>/2`, …),
//! atomically as the first: a live or settled claim is never taken over.
//!
//! A claim lapses ([`ChannelStore::create_lapsing`]) an hour ([`CLAIM_LAPSE_GRACE`]) after its
//! authorization's validity ends: by then the chain refuses the authorization and so does
//! verification (as expired, before it reads the store), and settlement is long over, so
//! the store may forget the claim and its settlement records. A payer who signs
//! authorizations and walks away therefore leaves the store no bigger once they lapse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U256};

use super::error::{X402Error, X402ErrorKind};
use super::offer::TransferMethod;
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelStore, StoreError, StoreErrorKind};

/// The claim's id: `x402:<chainId>:<asset>:<from>:<nonce>` for EIP-3009,
/// `x402-permit:<chainId>:<asset>:<owner>:<nonce>` for a Permit (lowercase hex).
pub(crate) fn claim_id(method: TransferMethod, chain_id: u64, asset: Address, from: Address, nonce: B256) -> ChannelId {
    match method {
        TransferMethod::Eip3009 => ChannelId::new(format!("x402:{chain_id}:{asset:#x}:{from:#x}:{nonce:#x}")),
        TransferMethod::Permit => {
            let nonce = U256::from_be_bytes(nonce.0);
            ChannelId::new(format!("x402-permit:{chain_id}:{asset:#x}:{from:#x}:{nonce}"))
        }
    }
}

fn used() -> X402Error {
    X402Error::new(X402ErrorKind::NonceUsed, "this authorization was already used for a payment")
}

pub(crate) fn store_down(_: StoreError) -> X402Error {
    X402Error::new(X402ErrorKind::Unavailable, "the payment store is unavailable")
}

/// Whether `id` was claimed already (no rounds: an upto permit's Permit2 nonce is random,
/// a client never reuses one). A cheap early answer for replays, before any RPC. Not
/// atomic; [`take`] decides.
pub(crate) async fn is_claimed<St: ChannelStore>(store: &St, id: &ChannelId) -> Result<bool, X402Error> {
    Ok(store.load(id).await.map_err(store_down)?.is_some())
}

/// How many void rounds a Permit nonce may go through (one per request that delivered
/// nothing) before it is refused as used.
const MAX_ROUNDS: u32 = 64;

/// The first unclaimed round of `base`: `base` itself unless it is claimed; for a Permit
/// (`reusable`), the first round that is not claimed, provided every claimed one is void.
/// A cheap early answer for replays, before any RPC; not atomic: [`take`] decides.
///
/// Every round of a Permit is looked at, not just those up to the first gap: rounds lapse
/// by their own deadlines, so an early round may have been swept while a later one is
/// still live (unsettled), and a new claim beside that one would deliver twice for one
/// nonce that settles once.
pub(crate) async fn vacant<St: ChannelStore>(
    store: &St,
    base: &ChannelId,
    reusable: bool,
) -> Result<ChannelId, X402Error> {
    let mut vacant = None;
    for round in 0..MAX_ROUNDS {
        let id = if round == 0 { base.clone() } else { ChannelId::new(format!("{base}/{round}")) };
        if store.load(&id).await.map_err(store_down)?.is_none() {
            if !reusable {
                return Ok(id);
            }
            vacant.get_or_insert(id);
            continue;
        }
        if !reusable || !super::settle::settled_nothing(store, &id).await? {
            return Err(used());
        }
    }
    vacant.ok_or_else(used)
}

/// How long a claim outlives its authorization's validity end (EIP-3009 `validBefore`, a
/// Permit's or a Permit2 permit's `deadline`): verification refuses an authorization as
/// expired well before its end (the settle margin), and settlement, retries included, is
/// over well within this; only then may the store forget the claim.
pub const CLAIM_LAPSE_GRACE: Duration = Duration::from_secs(3600);

/// When a claim on an authorization valid until `valid_until` (unix seconds) lapses, or
/// `None` for a date no [`SystemTime`] can name (the claim then never lapses; such an
/// authorization never expires either).
pub(crate) fn lapses_at(valid_until: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(valid_until))?.checked_add(CLAIM_LAPSE_GRACE)
}

/// Claims `id` for an authorization valid until `valid_until` (unix seconds), funding it
/// with `value`; a claimed one is refused as [`X402ErrorKind::NonceUsed`]. The claim lapses
/// [`CLAIM_LAPSE_GRACE`] after `valid_until`.
pub(crate) async fn take<St: ChannelStore>(
    store: &St,
    id: &ChannelId,
    value: Amount,
    valid_until: u64,
) -> Result<(), X402Error> {
    let created = match lapses_at(valid_until) {
        Some(at) => store.create_lapsing(id, value, value, at).await,
        None => store.create(id, value, value).await,
    };
    match created {
        Ok(_) => Ok(()),
        Err(e) if *e.kind() == StoreErrorKind::Exists => Err(used()),
        Err(e) => Err(store_down(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_lapses_an_hour_after_its_authorization_and_any_date_is_safe() {
        assert_eq!(lapses_at(1_000), Some(UNIX_EPOCH + Duration::from_secs(1_000 + 3_600)));
        // An attacker's `validBefore` of u64::MAX names no date: the claim never lapses
        // (the authorization never expires either), and nothing panics.
        assert_eq!(lapses_at(u64::MAX), None);
        assert_eq!(lapses_at(u64::from(u32::MAX)), UNIX_EPOCH.checked_add(Duration::from_secs(4_294_970_895)));
    }
}
