//! `Lapsing`: a toy one-shot payment that must settle by a deadline
//! ([`Grant::settle_by`]), as an x402 Permit or `upto` payment must.
//!
//! The payload names a fresh `nonce` (the claimed channel) and when the payment must settle:
//! `settleInMs` from now (negative: already past) or, with `far`, at a date no clock
//! reaches. Each settlement is reported on `settled`; `proven` grants also prove it, taking
//! `proofDelayMs` to.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;
use tollgate::method::{Grant, Offer, PaymentMethod, Proof, Renewal, Settled, Verified, Verify};
use tollgate::store::{ChannelId, ChannelStore};
use tollgate::wire::mpp::Receipt;
use tollgate::{Amount, PaymentError, PaymentErrorKind, Quote};

#[derive(Clone)]
pub struct Lapsing {
    pub settled: UnboundedSender<Settled>,
    pub proven: bool,
    pub renewal: Renewal,
    /// What each payment deposits (and the offer asks).
    pub deposit: u128,
    /// A settlement before the first content (`before_content`) that takes this long and
    /// then refuses.
    pub refusing_gate: Option<Duration>,
}

impl Lapsing {
    /// A one-shot (`Renewal::Never`) payment of `deposit`, without a gate.
    pub fn new(settled: UnboundedSender<Settled>, proven: bool, deposit: u128) -> Self {
        Lapsing { settled, proven, renewal: Renewal::Never, deposit, refusing_gate: None }
    }
}

impl PaymentMethod for Lapsing {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, _: &Quote) -> Vec<Offer<Value>> {
        vec![Offer::mpp("lapsing", "charge", json!({ "amount": self.deposit.to_string() }))]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, Value, Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let channel = ChannelId::new(verify.payload["nonce"].as_str().unwrap_or_default());
        let deposit = Amount::new(self.deposit);
        store
            .create(&channel, deposit, deposit)
            .await
            .map_err(|_| PaymentError::new(PaymentErrorKind::VerificationFailed, "nonce used"))?;
        let at = if verify.payload["far"].as_bool() == Some(true) {
            // Far past any clock, yet a valid `SystemTime`.
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX >> 2)).expect("representable")
        } else {
            let offset = verify.payload["settleInMs"].as_i64().unwrap_or_default();
            match u64::try_from(offset) {
                Ok(ahead) => SystemTime::now() + Duration::from_millis(ahead),
                Err(_) => SystemTime::now() - Duration::from_millis(offset.unsigned_abs()),
            }
        };
        let grant = Grant::new(channel.clone(), self.renewal, Receipt::new("lapsing", channel.to_string()));
        let settled = self.settled.clone();
        let grant = if self.proven {
            let delay = Duration::from_millis(verify.payload["proofDelayMs"].as_u64().unwrap_or_default());
            grant.proven_by(Proof::pending(json!({ "status": "pending" })), move |s: Settled| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let used = s.used;
                let _ = settled.send(s);
                Proof::settled(json!({ "success": true, "amount": used.to_string() }))
            })
        } else {
            grant.on_settled(move |s| {
                let _ = settled.send(s);
            })
        };
        let grant = match self.refusing_gate {
            Some(takes) => grant.before_content(move || async move {
                tokio::time::sleep(takes).await;
                Err(Proof::failed(
                    PaymentError::new(PaymentErrorKind::VerificationFailed, "refused"),
                    json!({ "success": false, "errorReason": "refused" }),
                ))
            }),
            None => grant,
        };
        Ok(Verified::Serve(grant.settle_by(at)))
    }
}
