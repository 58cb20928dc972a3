//! [`Settling`]: when and how one x402 payment settles inside a response, as the two grant
//! hooks ([`Grant::before_content`](crate::method::Grant::before_content) and
//! [`Grant::proven_by`](crate::method::Grant::proven_by)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderName;
use tokio::sync::watch;

use super::method::Observer;
use super::offer::TransferMethod;
use super::proof;
use super::settle::Settle;
use super::verify::Verified;
use crate::amount::Amount;
use crate::method::{Proof, ProofStatus, Settled};

/// One verified payment, its settler, and the header its receipt goes in.
pub(super) struct Settling<Se> {
    pub(super) settler: Arc<Se>,
    pub(super) observer: Option<Observer>,
    pub(super) verified: Verified,
    pub(super) header: HeaderName,
}

/// The settlement made before a stream's content, shared by both hooks.
struct Early {
    started: AtomicBool,
    proof: watch::Receiver<Option<Proof>>,
}

/// The gate: settles an EIP-3009 payment before the first content event of a stream.
pub(super) struct Gate<Se> {
    settling: Arc<Settling<Se>>,
    early: Arc<Early>,
    done: watch::Sender<Option<Proof>>,
}

/// The settled hook: settles what the response used, unless the gate did.
pub(super) struct Final<Se> {
    settling: Arc<Settling<Se>>,
    early: Arc<Early>,
}

impl<Se: Settle> Settling<Se> {
    /// The two hooks of this payment.
    pub(super) fn hooks(self) -> (impl FnOnce() -> GateFuture + Send + 'static, Final<Se>) {
        let settling = Arc::new(self);
        let (done, proof) = watch::channel(None);
        let early = Arc::new(Early { started: AtomicBool::new(false), proof });
        let gate = Gate { settling: settling.clone(), early: early.clone(), done };
        (move || gate.run(), Final { settling, early })
    }

    /// Settles `actual` (`None`: nothing), reports it to the observer and makes its proof.
    async fn settle(&self, actual: Option<Amount>) -> Proof {
        let outcome = match actual {
            Some(actual) => Some(self.settler.settle(&self.verified, actual).await),
            None => {
                // A Permit that moves nothing is settled for 0 all the same: the record
                // frees its nonce for the payer's next permit (see `claim::vacant`).
                if self.verified.offer().method() == TransferMethod::Permit {
                    let _ = self.settler.settle(&self.verified, Amount::ZERO).await;
                }
                None
            }
        };
        let proof = proof::of(&self.verified, &self.header, outcome.as_ref());
        if let Some(observer) = &self.observer {
            observer(outcome);
        }
        proof
    }

    fn pending(&self) -> Proof {
        proof::pending(&self.verified, &self.header)
    }
}

type GateFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Proof>> + Send>>;

impl<Se: Settle> Gate<Se> {
    fn run(self) -> GateFuture {
        Box::pin(async move {
            self.early.started.store(true, Ordering::SeqCst);
            let Gate { settling, done, .. } = self;
            let pending = settling.pending();
            let settle = async move {
                let proof = settling.settle(Some(settling.verified.value())).await;
                let _ = done.send(Some(proof.clone()));
                proof
            };
            // Spawned: a client gone meanwhile must not cut a settlement off half-way (the
            // settled hook then waits for this one rather than starting another).
            let proof = match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime.spawn(settle).await.unwrap_or(pending),
                Err(_) => settle.await,
            };
            match proof.status() {
                ProofStatus::Failed => Err(proof),
                _ => Ok(()),
            }
        })
    }
}

impl<Se: Settle> Final<Se> {
    /// What the response says while the settlement is late.
    pub(super) fn pending(&self) -> Proof {
        self.settling.pending()
    }

    /// Settles what the response used, or reports the gate's settlement if it ran.
    pub(super) async fn run(self, settled: Settled) -> Proof {
        if self.early.started.load(Ordering::SeqCst) {
            let mut early = self.early.proof.clone();
            return match early.wait_for(Option::is_some).await {
                Ok(proof) => proof.clone().unwrap_or_else(|| self.pending()),
                // The gate's task is gone (its runtime shut down): outcome unknown.
                Err(_) => self.pending(),
            };
        }
        let actual = settle_amount(&self.settling.verified, &settled);
        self.settling.settle(actual).await
    }
}

/// What settles for a response that used `settled`: `None` for nothing.
fn settle_amount(verified: &Verified, settled: &Settled) -> Option<Amount> {
    match verified.offer().method() {
        TransferMethod::Eip3009 => (settled.used > Amount::ZERO || settled.units > 0).then(|| verified.value()),
        TransferMethod::Permit => (settled.used > Amount::ZERO).then(|| settled.used.min(verified.value())),
    }
}
