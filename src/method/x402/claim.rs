//! Replay protection across instances: a verified authorization is claimed in the store,
//! atomically, and the claim is the one-shot account the response draws on.
//!
//! The claim is a store channel made with [`ChannelStore::create`], funded with the signed
//! value: of several requests (on any instance sharing the store) carrying the same
//! authorization exactly one gets it. It is taken last, after every other check passed, so a
//! refused payment leaves nothing in the store.

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

/// Whether `id` was claimed already: a cheap early answer for replays, before any RPC. Not
/// atomic; [`take`] decides.
pub(crate) async fn is_claimed<St: ChannelStore>(store: &St, id: &ChannelId) -> Result<bool, X402Error> {
    Ok(store.load(id).await.map_err(store_down)?.is_some())
}

/// Claims `id`, funding it with `value`; a claimed one is refused as [`X402ErrorKind::NonceUsed`].
pub(crate) async fn take<St: ChannelStore>(store: &St, id: &ChannelId, value: Amount) -> Result<(), X402Error> {
    match store.create(id, value, value).await {
        Ok(_) => Ok(()),
        Err(e) if *e.kind() == StoreErrorKind::Exists => Err(used()),
        Err(e) => Err(store_down(e)),
    }
}
