//! Replay protection: a payment's transaction hash is claimed in the store, atomically,
//! and the claim becomes the one-shot account the response draws on.
//!
//! A claim is a store channel `charge:<hash>` made with [`ChannelStore::create`], so of
//! two requests carrying the same payment exactly one gets it. It goes through three
//! states, read from the channel:
//!
//! - **pending** (`accepted = 0`): being verified, or broadcast;
//! - **funded** (`accepted = amount`): the payment went through; the grant draws on it;
//! - **released** (`accepted = 0`, finalized): verification stopped before anything was
//!   paid for (the chain could not be reached, or refused the transaction).
//!
//! The store has no delete, so a released claim cannot be removed: the next attempt
//! claims `charge:<hash>:1`, then `:2`, and so on, skipping released slots. A payment
//! whose RPC failed can thus be retried with the same credential, while a funded (or
//! pending) claim anywhere in the chain refuses it. After [`MAX_ATTEMPTS`] released
//! attempts the payment is refused for good.
//!
//! If the store itself fails between claiming and funding, the claim stays pending and
//! that payment cannot be used again without an operator.

use alloy::primitives::B256;

use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError, StoreErrorKind};

/// How many times one transaction may be claimed and released.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// A claimed payment.
#[derive(Debug)]
pub(crate) struct Claim {
    id: ChannelId,
    attempt: u32,
}

fn slot(hash: B256, attempt: u32) -> ChannelId {
    match attempt {
        0 => ChannelId::new(format!("charge:{hash:#x}")),
        n => ChannelId::new(format!("charge:{hash:#x}:{n}")),
    }
}

fn released(state: &ChannelState) -> bool {
    state.finalized && state.accepted.is_zero()
}

fn used() -> PaymentError {
    PaymentError::new(PaymentErrorKind::VerificationFailed, "this transaction was already used for a payment")
}

fn store_error(_: StoreError) -> PaymentError {
    PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable")
}

impl Claim {
    /// Claims `hash` for a payment of `amount`; a payment that was used (or is being
    /// verified) is refused with `verification-failed`.
    pub(crate) async fn take<St: ChannelStore>(store: &St, hash: B256, amount: Amount) -> Result<Claim, PaymentError> {
        for attempt in 0..MAX_ATTEMPTS {
            let id = slot(hash, attempt);
            match store.create(&id, Amount::ZERO, amount).await {
                Ok(_) => return Ok(Claim { id, attempt }),
                Err(e) if *e.kind() == StoreErrorKind::Exists => {}
                Err(e) => return Err(store_error(e)),
            }
            match store.load(&id).await.map_err(store_error)? {
                Some(state) if released(&state) => continue,
                Some(_) => return Err(used()),
                None => return Err(store_error(StoreError::new(StoreErrorKind::NotFound))),
            }
        }
        Err(PaymentError::new(PaymentErrorKind::VerificationFailed, "this transaction failed too many times"))
    }

    /// Whether `hash` was already used (or is being verified): a cheap early answer for
    /// replays. Not atomic; [`take`](Self::take) decides.
    pub(crate) async fn is_used<St: ChannelStore>(store: &St, hash: B256) -> Result<bool, PaymentError> {
        for attempt in 0..MAX_ATTEMPTS {
            match store.load(&slot(hash, attempt)).await.map_err(store_error)? {
                None => return Ok(false),
                Some(state) if released(&state) => continue,
                Some(_) => return Ok(true),
            }
        }
        Ok(true)
    }

    /// The store channel the grant draws on.
    pub(crate) fn id(&self) -> &ChannelId {
        &self.id
    }

    /// Whether an earlier attempt of this payment was released (its transaction may have
    /// reached the chain after all).
    pub(crate) fn retried(&self) -> bool {
        self.attempt > 0
    }

    /// Funds the claim with `amount`: the payment went through.
    pub(crate) async fn fund<St: ChannelStore>(&self, store: &St, amount: Amount) -> Result<(), PaymentError> {
        store.accept(&self.id, amount, amount).await.map(drop).map_err(store_error)
    }

    /// Releases the claim: nothing was paid for, the payment may be retried. Best effort;
    /// a store that fails here leaves the claim pending.
    pub(crate) async fn release<St: ChannelStore>(self, store: &St) {
        let _ = store.finalize(&self.id).await;
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
        assert!(!claim.retried());
        // Pending: a concurrent copy is refused, and nothing can be spent yet.
        assert!(now(Claim::is_used(&store, hash)).unwrap());
        assert_eq!(now(Claim::take(&store, hash, amount)).unwrap_err().kind(), PaymentErrorKind::VerificationFailed);
        assert_eq!(now(store.load(claim.id())).unwrap().unwrap().available(), Amount::ZERO);
        now(claim.fund(&store, amount)).unwrap();
        assert_eq!(now(store.load(claim.id())).unwrap().unwrap().available(), amount);
        assert_eq!(now(Claim::take(&store, hash, amount)).unwrap_err().kind(), PaymentErrorKind::VerificationFailed);
    }

    #[test]
    fn a_released_claim_can_be_taken_again_a_bounded_number_of_times() {
        let (store, hash, amount) = (MemoryStore::new(), B256::repeat_byte(2), Amount::new(500));
        for attempt in 0..MAX_ATTEMPTS {
            let claim = now(Claim::take(&store, hash, amount)).unwrap();
            assert_eq!(claim.retried(), attempt > 0);
            assert!(now(Claim::is_used(&store, hash)).unwrap());
            now(claim.release(&store));
            assert!(!now(Claim::is_used(&store, hash)).unwrap() || attempt + 1 == MAX_ATTEMPTS);
        }
        assert_eq!(now(Claim::take(&store, hash, amount)).unwrap_err().kind(), PaymentErrorKind::VerificationFailed);

        // A funded retry refuses every later attempt.
        let other = B256::repeat_byte(3);
        now(now(Claim::take(&store, other, amount)).unwrap().release(&store));
        let retry = now(Claim::take(&store, other, amount)).unwrap();
        assert!(retry.retried());
        now(retry.fund(&store, amount)).unwrap();
        assert!(now(Claim::is_used(&store, other)).unwrap());
        assert_eq!(now(Claim::take(&store, other, amount)).unwrap_err().kind(), PaymentErrorKind::VerificationFailed);
    }
}
