//! [`X402Exact`]: the x402 `exact` scheme on an EVM token as a [`PaymentMethod`].

use std::fmt;
use std::sync::Arc;

use super::error::X402Error;
use super::offer::{EvmOffer, TransferMethod, ValueRule};
use super::payload::ExactPayload;
use super::settle::{Settle, Settlement};
use super::settling::Settling;
use super::token::X402Chain;
use super::verify::{self, DEFAULT_SETTLE_MARGIN_SECS};
use crate::amount::{Amount, Quote};
use crate::error::PaymentError;
use crate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use crate::store::ChannelStore;
use crate::wire::Presented;
use crate::wire::mpp::Receipt;
use crate::wire::x402::{PAYMENT_RESPONSE, PaymentRequirements};

/// What a finished settlement reports to an observer: the claim it settled and the outcome
/// (`None`: nothing was settled because nothing was delivered).
pub type SettlementOutcome = Option<Result<Settlement, X402Error>>;

pub(super) type Observer = Arc<dyn Fn(SettlementOutcome) + Send + Sync>;

/// The x402 `exact` scheme on one EVM token, as a [`PaymentMethod`]: offers the request's
/// maximum price, verifies with the token's EIP-712 domain and the chain, claims the payment
/// in the layer's store (so a replay is refused on every instance) and settles through `Se`
/// once the response is over.
///
/// What is settled, decided after the last store commit ([`Grant::proven_by`]):
///
/// - EIP-3009 ([`TransferMethod::Eip3009`]): the signed value, all of it, iff the response
///   delivered something (`used > 0` or `units > 0`). A non-2xx answer, an upstream error
///   before the first content or a client gone before it settles nothing; the
///   authorization expires unused.
/// - Permit ([`TransferMethod::Permit`]): exactly what was metered (`used`, at most the
///   signed maximum); `0` sends no transaction.
///
/// When, and the receipt:
///
/// - A plain (non-SSE) 2xx answer is held back, read whole and metered; it settles before
///   its head goes out, so "content went out" means "a 2xx answer with its body is about to
///   go out". The head carries the x402 `SettleResponse` (base64 JSON, with the settled
///   `amount`) in `PAYMENT-RESPONSE` when the payment came as `PAYMENT-SIGNATURE`, in
///   `X-PAYMENT-RESPONSE` when it came as `X-PAYMENT`. A settlement that fails answers
///   `402` with its error and delivers nothing; one whose outcome is unknown (sent, not
///   confirmed) delivers the answer with a `success: false`, `settlement_pending` receipt.
/// - An SSE stream paid with EIP-3009 settles just before its first content event goes
///   out ([`Grant::before_content`]): a payment that fails to settle ends the stream there,
///   delivering nothing; otherwise the content flows, already paid (a payer cannot empty
///   its account meanwhile, and a stream longer than the authorization's validity is
///   paid). A stream paid with a Permit settles after its last content event (the amount
///   is what was delivered). Either way the stream ends with an `event: payment-receipt`
///   whose data is that `SettleResponse` JSON (its `extensions` name the `status` and the
///   claim `reference`); after 30 s without an outcome, the event says `pending` and the
///   settlement runs on.
/// - A client gone mid-stream pays what it received; nobody gets the receipt. A client
///   gone while its stream's EIP-3009 payment settles is charged: the settlement runs to
///   its end (once), as x402 settles before it answers.
///
/// A request whose price has no maximum (open-ended metering) is not offered x402: a
/// one-shot signature must cover the whole response.
///
/// Observe every outcome with [`on_settlement`](Self::on_settlement). A settlement whose
/// outcome is unknown stays listed on the [`PENDING_SHELF`](super::settle::PENDING_SHELF)
/// of its claim.
pub struct X402Exact<C, Se> {
    offer: EvmOffer,
    chain: C,
    settler: Arc<Se>,
    settle_margin: u64,
    observer: Option<Observer>,
}

impl<C: Clone, Se> Clone for X402Exact<C, Se> {
    fn clone(&self) -> Self {
        X402Exact {
            offer: self.offer.clone(),
            chain: self.chain.clone(),
            settler: self.settler.clone(),
            settle_margin: self.settle_margin,
            observer: self.observer.clone(),
        }
    }
}

impl<C, Se> fmt::Debug for X402Exact<C, Se> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X402Exact").field("offer", &self.offer).field("settle_margin", &self.settle_margin).finish()
    }
}

impl<C: X402Chain + Clone, Se: Settle> X402Exact<C, Se> {
    /// Offers `offer` (its amount is replaced by each request's maximum price), reads the
    /// token through `chain` and settles through `settler`.
    pub fn new(offer: EvmOffer, chain: C, settler: Se) -> Self {
        X402Exact {
            offer,
            chain,
            settler: Arc::new(settler),
            settle_margin: DEFAULT_SETTLE_MARGIN_SECS,
            observer: None,
        }
    }

    /// How long an authorization must stay valid after verification (default
    /// [`DEFAULT_SETTLE_MARGIN_SECS`]). A response settled at its end with a permit ends this
    /// long before the permit lapses, or before the offer's `maxTimeoutSeconds` run out if
    /// that comes first (see [`Grant::settle_by`](crate::method::Grant::settle_by)).
    pub fn settle_margin(mut self, seconds: u64) -> Self {
        self.settle_margin = seconds;
        self
    }

    /// Calls `observer` once per paid response when its settlement is over (for logs,
    /// metrics and tests). It runs on the runtime and must not block.
    pub fn on_settlement(mut self, observer: impl Fn(SettlementOutcome) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The offer for `amount`.
    fn offer_for(&self, amount: Amount) -> EvmOffer {
        self.offer.clone().with_amount(amount)
    }

    /// The `accepts` entry of `offer`.
    fn requirement(offer: &EvmOffer) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: offer.network(),
            amount: offer.amount(),
            asset: offer.asset().to_checksum(None),
            pay_to: offer.pay_to().to_checksum(None),
            max_timeout_seconds: offer.timeout_seconds(),
            extra: Some(offer.extra()),
        }
    }
}

impl<C, Se> PaymentMethod for X402Exact<C, Se>
where
    C: X402Chain + Clone + Send + Sync + 'static,
    Se: Settle,
{
    type Request = PaymentRequirements;
    type Payload = ExactPayload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<PaymentRequirements>> {
        match quote.maximum() {
            Some(maximum) if maximum > Amount::ZERO => {
                vec![Offer::x402("exact", Self::requirement(&self.offer_for(maximum)))]
            }
            _ => Vec::new(),
        }
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, PaymentRequirements, ExactPayload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        // v2 names the offer it pays (pinned by the layer to one made now): the value must be
        // that amount. v1 names none: it must pay at least the offer it matched.
        let rule = match verify.x402() {
            Some(payment) if payment.accepted.is_some() => ValueRule::Equal,
            _ => ValueRule::AtLeast,
        };
        // A Permit signs a ceiling, never more than offered: hold it to the amount exactly.
        let rule = if self.offer.method() == TransferMethod::Permit { ValueRule::Equal } else { rule };
        let offer = self.offer_for(verify.request.amount);
        let now = verify::unix_now();
        let verified =
            verify::verify_in(&self.chain, store, &offer, verify.payload, rule, now, self.settle_margin).await?;
        let payer = verified.payer().to_checksum(None);
        let valid_before = verified.payload().authorization.valid_before;
        let receipt = Receipt::new("x402", verified.claim().to_string());
        let grant = Grant::new(verified.claim().clone(), Renewal::Never, receipt).payer(payer);
        let header = match verify.presented {
            Presented::X402 { header, .. } => header.receipt_header(),
            Presented::Mpp(_) => PAYMENT_RESPONSE,
        };
        let settling = Settling { settler: self.settler.clone(), observer: self.observer.clone(), verified, header };
        let (gate, settled) = settling.hooks();
        let grant = grant.proven_by(settled.pending(), move |used| settled.run(used));
        Ok(Verified::Serve(match offer.method() {
            TransferMethod::Eip3009 => grant.before_content(gate),
            // Settled at the end with the permit: the response must be over before it lapses.
            TransferMethod::Permit => {
                match verify::settle_by(valid_before, now, offer.timeout_seconds(), self.settle_margin) {
                    Some(at) => grant.settle_by(at),
                    None => grant,
                }
            }
        }))
    }
}
