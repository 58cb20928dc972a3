//! Replay protection: a mined payment's transaction hash is claimed in the store,
//! atomically, and the claim is the one-shot account the response draws on.
//!
//! A claim is a store channel `charge:<hash>` made with [`ChannelStore::create`], already
//! funded with the amount paid, so of two requests carrying the same payment exactly one
//! gets it. It is taken only once the payment is mined and checked (pull and push alike):
//! a transaction that never lands, or does not pay, leaves nothing in the store, so an
//! outsider cannot grow the store without paying. A payment whose verification stopped
//! before the claim (chain unreachable, store down) can be retried with the same
//! credential: the retry finds the mined transaction and claims it then.

use alloy::primitives::B256;

use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::store::{ChannelId, ChannelStore, StoreError, StoreErrorKind};

/// A claimed, funded payment.
#[derive(Debug)]
pub(crate) struct Claim {
    id: ChannelId,
}

fn slot(hash: B256) -> ChannelId {
    ChannelId::new(format!("charge:{hash:#x}"))
}

fn used() -> PaymentError {
    PaymentError::new(PaymentErrorKind::VerificationFailed, "this transaction was already used for a payment")
}

fn store_error(_: StoreError) -> PaymentError {
    PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable")
}

impl Claim {
    /// Claims the mined payment `hash` of `amount`, funding its account; a payment that was
    /// used already is refused with `verification-failed`.
    pub(crate) async fn take<St: ChannelStore>(store: &St, hash: B256, amount: Amount) -> Result<Claim, PaymentError> {
        let id = slot(hash);
        match store.create(&id, amount, amount).await {
            Ok(_) => Ok(Claim { id }),
            Err(e) if *e.kind() == StoreErrorKind::Exists => Err(used()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Whether `hash` was already used: a cheap early answer for replays, before any RPC.
    /// Not atomic; [`take`](Self::take) decides.
    pub(crate) async fn is_used<St: ChannelStore>(store: &St, hash: B256) -> Result<bool, PaymentError> {
        Ok(store.load(&slot(hash)).await.map_err(store_error)?.is_some())
    }

    /// The store channel the grant draws on.
    pub(crate) fn id(&self) -> &ChannelId {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::store::MemoryStore;

    fn now<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a memory store operation waited"),
        }
    }

    #[test]
    fn a_claim_is_taken_once_and_funds_the_grant() {
        let (store, hash, amount) = (MemoryStore::new(), B256::repeat_byte(1), Amount::new(500));
        assert!(!now(Claim::is_used(&store, hash)).unwrap());
        let claim = now(Claim::take(&store, hash, amount)).unwrap();
        assert_eq!(claim.id().as_str(), format!("charge:{hash:#x}"));
        assert!(now(Claim::is_used(&store, hash)).unwrap());
        assert_eq!(now(store.load(claim.id())).unwrap().unwrap().available(), amount);
        assert_eq!(now(Claim::take(&store, hash, amount)).unwrap_err().kind(), PaymentErrorKind::VerificationFailed);
        assert_eq!(
            now(store.load(claim.id())).unwrap().unwrap().available(),
            amount,
            "a refused claim changes nothing"
        );
    }
}
