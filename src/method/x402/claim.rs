//! Replay protection across instances: a verified authorization is claimed in the store,
//! atomically, and the claim is the one-shot account the response draws on.
//!
//! The claim is a store channel made with [`ChannelStore::create`], funded with the signed
//! value: of several requests (on any instance sharing the store) carrying the same
//! authorization exactly one gets it. It is taken last, after every other check passed, so a
//! refused payment leaves nothing in the store.
//!
//! A Permit's claim is keyed by the owner's nonce, which a client reads from the token: a
//! permit that settled nothing (nothing was delivered, so nothing was sent) leaves that
//! nonce the owner's next, and the client's next permit carries it again. Such a claim is
//! void, and the next permit takes the next round of it (`<claim>/1`, `<claim>/2`, …),
//! atomically as the first: a live or settled claim is never taken over.

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
/// (`reusable`), the round after the void ones. A cheap early answer for replays, before
/// any RPC; not atomic: [`take`] decides.
pub(crate) async fn vacant<St: ChannelStore>(
    store: &St,
    base: &ChannelId,
    reusable: bool,
) -> Result<ChannelId, X402Error> {
    for round in 0..MAX_ROUNDS {
        let id = if round == 0 { base.clone() } else { ChannelId::new(format!("{base}/{round}")) };
        if store.load(&id).await.map_err(store_down)?.is_none() {
            return Ok(id);
        }
        if !reusable || !super::settle::settled_nothing(store, &id).await? {
            return Err(used());
        }
    }
    Err(used())
}

/// Claims `id`, funding it with `value`; a claimed one is refused as [`X402ErrorKind::NonceUsed`].
pub(crate) async fn take<St: ChannelStore>(store: &St, id: &ChannelId, value: Amount) -> Result<(), X402Error> {
    match store.create(id, value, value).await {
        Ok(_) => Ok(()),
        Err(e) if *e.kind() == StoreErrorKind::Exists => Err(used()),
        Err(e) => Err(store_down(e)),
    }
}
