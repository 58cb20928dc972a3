//! `DemoCredits`, the **demo-only** payment method the examples share.
//!
//! It believes the amounts the client claims to have paid: it shows how a method plugs
//! into the layer and lets an example run without a chain. Never use it for money; real
//! deployments use a method that verifies payments (Tempo vouchers, x402 transfers).

use serde_json::{Value, json};
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use tollgate::store::{ChannelId, ChannelStore};
use tollgate::wire::mpp::Receipt;
use tollgate::{Amount, PaymentError, PaymentErrorKind, Quote};

/// Demo only: trusts the client's claimed cumulative payment. Never use it for money.
#[derive(Debug)]
pub struct DemoCredits;

impl PaymentMethod for DemoCredits {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<Value>> {
        let amount = quote.price.output.unit_price().to_string();
        let request = json!({"amount": amount, "unitType": quote.price.unit});
        vec![Offer::mpp("democredits", "charge", request).description("demo credits (not real money)")]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, Value, Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let payload = verify.payload;
        let invalid = || PaymentError::new(PaymentErrorKind::InvalidPayload, "expected {channel, paid}");
        let channel = ChannelId::new(payload["channel"].as_str().ok_or_else(invalid)?);
        let paid: Amount = payload["paid"].as_str().and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
        let unavailable = |_| PaymentError::new(PaymentErrorKind::Unavailable, "store failed");
        store.open(&channel, Amount::ZERO, Amount::new(u128::MAX)).await.map_err(unavailable)?;
        store.accept(&channel, paid, Amount::new(u128::MAX)).await.map_err(unavailable)?;
        let mut receipt = Receipt::new("democredits", channel.as_str());
        receipt.challenge_id = verify.challenge().map(|c| c.id.clone());
        // One-shot: when what was paid runs out, the response ends (cleanly for SSE and gRPC).
        Ok(Verified::Serve(Grant::new(channel, Renewal::Never, receipt)))
    }
}
