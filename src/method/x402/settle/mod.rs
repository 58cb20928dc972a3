//! Settlement of a verified x402 payment: on chain with the payee's key ([`OnChainSettler`])
//! or by an x402 facilitator over HTTP ([`Facilitator`]), behind one trait, [`Settle`].
//!
//! # Never twice
//!
//! Before anything is sent, the settlement is recorded as pending on the claim's shelf
//! [`PENDING_SHELF`] (so `ChannelStore::shelved(PENDING_SHELF)` lists what a crash left
//! open); once its outcome is known it moves to [`SETTLED_SHELF`], and a second `settle` of
//! the same payment returns that record without touching the chain. One settler at a time
//! per payment (a store lock). When the outcome is ambiguous (a timeout, an RPC error after
//! the broadcast), the token's own nonce state decides: `authorizationState(from, nonce)`
//! for EIP-3009, `nonces(owner)` and `allowance(owner, payTo)` for a Permit, Permit2's
//! `nonceBitmap(owner, word)` for [`X402Upto`](super::X402Upto). Only a step that surely did
//! not happen is retried, once; otherwise the payment stays pending
//! ([`X402ErrorKind::SettlementPending`](super::X402ErrorKind::SettlementPending)).
//!
//! # What the caller decides
//!
//! Settle only what was delivered: an upstream error or a non-2xx response is never settled
//! (EIP-3009: do not call `settle`; the authorization expires unused. Permit: settle `0`,
//! which sends nothing and records the claim void, so its nonce can pay again). That rule
//! belongs to the layer, which knows the response ([`X402Exact`](super::X402Exact) applies it).

mod chain;
mod facilitator;

pub use chain::OnChainSettler;
pub use facilitator::{Facilitator, FacilitatorSupported};

use std::future::Future;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::claim::store_down;
use super::error::{X402Error, X402ErrorKind};
use super::verify::Verified;
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelStore, LockHolder};

/// The shelf a settlement waits on while its outcome is not known.
pub const PENDING_SHELF: &str = "x402-pending";
/// The shelf a settled payment's record lives on.
pub const SETTLED_SHELF: &str = "x402-settled";

/// How long one settler holds a payment.
const SETTLE_LOCK: Duration = Duration::from_secs(120);

/// A settled payment: the x402 `SettleResponse` fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Who paid.
    pub payer: Address,
    /// What moved to the payee (0: nothing was sent).
    pub amount: Amount,
    /// The transaction that moved it; `None` when nothing was sent, or when the token's state
    /// shows it settled by a transaction this settler did not see (a retry after a timeout).
    pub transaction: Option<B256>,
    /// The CAIP-2 network.
    pub network: String,
}

/// Settles a verified x402 payment. See the [module docs](self) for the rules.
pub trait Settle: Send + Sync + 'static {
    /// Moves `actual` of `verified` to the payee. EIP-3009 moves exactly the signed value
    /// (`actual` must equal it); a Permit moves `actual` ≤ the signed maximum, and `0` sends
    /// nothing. Settling the same payment again returns the first settlement.
    fn settle(&self, verified: &Verified, actual: Amount)
    -> impl Future<Output = Result<Settlement, X402Error>> + Send;
}

/// What is recorded on the shelves.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    amount: Amount,
    transaction: Option<B256>,
}

/// The per-payment bookkeeping both settlers share.
pub(crate) struct Books<'a, S> {
    store: &'a S,
    claim: &'a ChannelId,
    payer: Address,
    network: String,
    holder: LockHolder,
}

impl<'a, S: ChannelStore> Books<'a, S> {
    /// Takes the payment's settle lock, or says it is being settled elsewhere.
    pub(crate) async fn open(store: &'a S, verified: &'a Verified) -> Result<Self, X402Error> {
        Self::open_claim(store, verified.claim(), verified.payer(), verified.offer().network()).await
    }

    /// [`open`](Self::open) for any claimed payment: its claim, payer and CAIP-2 network.
    pub(crate) async fn open_claim(
        store: &'a S,
        claim: &'a ChannelId,
        payer: Address,
        network: String,
    ) -> Result<Self, X402Error> {
        let holder = LockHolder::new();
        if !store.lock(&lock_name(claim), holder, SETTLE_LOCK).await.map_err(store_down)? {
            return Err(X402Error::new(X402ErrorKind::SettlementPending, "another settler is settling this payment"));
        }
        Ok(Books { store, claim, payer, network, holder })
    }

    /// The recorded settlement, if there is one.
    pub(crate) async fn settled(&self) -> Result<Option<Settlement>, X402Error> {
        let kept = self.store.kept(self.claim, SETTLED_SHELF).await.map_err(store_down)?;
        Ok(kept.last().and_then(|(_, bytes)| serde_json::from_slice::<Record>(bytes).ok()).map(|r| self.settlement(r)))
    }

    /// Whether an earlier attempt left this payment pending (it may have sent something).
    pub(crate) async fn was_pending(&self) -> Result<bool, X402Error> {
        let kept = self.store.kept(self.claim, PENDING_SHELF).await.map_err(store_down)?;
        Ok(!kept.is_empty())
    }

    /// Records that `amount` is about to be sent.
    pub(crate) async fn pending(&self, amount: Amount) -> Result<(), X402Error> {
        let record = Record { amount, transaction: None };
        let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        self.store.keep(self.claim, PENDING_SHELF, amount, bytes).await.map_err(store_down)
    }

    /// Records the outcome and clears the pending mark.
    pub(crate) async fn done(&self, amount: Amount, transaction: Option<B256>) -> Result<Settlement, X402Error> {
        let record = Record { amount, transaction };
        let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        let claim = self.claim;
        self.store.keep(claim, SETTLED_SHELF, amount, bytes).await.map_err(store_down)?;
        self.store.discard(claim, PENDING_SHELF, None).await.map_err(store_down)?;
        Ok(self.settlement(record))
    }

    /// Gives up the lock (a lapsed lock is taken over anyway).
    pub(crate) async fn close(self) {
        let _ = self.store.unlock(&lock_name(self.claim), self.holder).await;
    }

    fn settlement(&self, r: Record) -> Settlement {
        Settlement { payer: self.payer, amount: r.amount, transaction: r.transaction, network: self.network.clone() }
    }
}

/// Whether the payment claimed as `claim` is settled, for nothing and with no transaction
/// (a Permit whose response delivered nothing): its nonce is still the owner's next.
pub(crate) async fn settled_nothing<S: ChannelStore>(
    store: &S,
    claim: &crate::store::ChannelId,
) -> Result<bool, X402Error> {
    let kept = store.kept(claim, SETTLED_SHELF).await.map_err(store_down)?;
    let last = kept.last().and_then(|(_, bytes)| serde_json::from_slice::<Record>(bytes).ok());
    Ok(last.is_some_and(|r| r.amount.is_zero() && r.transaction.is_none()))
}

fn lock_name(claim: &ChannelId) -> String {
    format!("x402-settle:{claim}")
}

/// An EIP-3009 payment settles exactly its signed value.
pub(crate) fn exact_amount(verified: &Verified, actual: Amount) -> Result<Amount, X402Error> {
    if actual != verified.value() {
        return Err(X402Error::new(
            X402ErrorKind::InvalidPayload,
            format!("an EIP-3009 payment settles its signed value {}, not {actual}", verified.value()),
        ));
    }
    Ok(actual)
}
