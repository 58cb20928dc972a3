//! [`Facilitator`]: an x402 facilitator settles (and may verify) over HTTP.

use std::time::Duration;

use alloy::primitives::B256;
use alloy::transports::http::reqwest;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Books, Settle, Settlement, exact_amount};
use crate::amount::Amount;
use crate::method::x402::error::{X402Error, X402ErrorKind};
use crate::method::x402::offer::{EvmOffer, TransferMethod};
use crate::method::x402::payload::ExactPayload;
use crate::method::x402::token::{Token, X402Chain};
use crate::method::x402::upto::settle::settled_without_sending;
use crate::method::x402::upto::{UptoVerified, upto_nonce_used, upto_requirement};
use crate::method::x402::verify::Verified;
use crate::store::ChannelStore;

/// The most of a facilitator answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

/// An x402 facilitator at a base URL: `POST /verify`, `POST /settle` (body
/// `{x402Version, paymentPayload, paymentRequirements}`), `GET /supported`.
///
/// It settles EIP-3009 payments (the official facilitator's `exact`) and, for
/// [`X402Upto`](crate::method::x402::X402Upto), `upto` payments; a Permit offer must be
/// settled with [`OnChainSettler`](super::OnChainSettler). A settle that times out, fails in
/// transport or answers 5xx is ambiguous: the token's `authorizationState(from, nonce)`
/// (read through `chain`) decides, and only an unused authorization is sent again, once. A
/// facilitator's word that it settled is checked the same way: a success the token does not
/// show is a failure.
#[derive(Clone, Debug)]
pub struct Facilitator<C, S> {
    base: String,
    http: reqwest::Client,
    chain: C,
    store: S,
}

/// `GET /supported`: what the facilitator settles.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct FacilitatorSupported {
    /// `{x402Version, scheme, network, extra?}` per kind.
    #[serde(default)]
    pub kinds: Vec<SupportedKind>,
    /// Signer addresses per CAIP-2 family (`"eip155:*": [...]`).
    #[serde(default)]
    pub signers: Value,
}

/// One kind a facilitator supports.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SupportedKind {
    /// The protocol version.
    pub x402_version: u32,
    /// The scheme (`exact`, `upto`, …).
    pub scheme: String,
    /// The CAIP-2 network (or v1 name).
    pub network: String,
    /// Scheme-specific data.
    #[serde(default)]
    pub extra: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettleAnswer {
    success: bool,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    transaction: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyAnswer {
    is_valid: bool,
    #[serde(default)]
    invalid_reason: Option<String>,
}

/// How one call ended.
enum Answer<T> {
    Known(T),
    /// Timeout, transport error, 5xx, unreadable: nothing is known.
    Unknown(String),
}

impl<C: X402Chain, S: ChannelStore> Facilitator<C, S> {
    /// A facilitator at `base` (e.g. `http://127.0.0.1:4021`), confirming ambiguous settles
    /// through `chain` and recording in `store`; each call times out after 30 s.
    pub fn new(base: impl Into<String>, chain: C, store: S) -> Result<Self, X402Error> {
        Self::with_timeout(base, chain, store, Duration::from_secs(30))
    }

    /// [`new`](Self::new) with another per-call timeout.
    pub fn with_timeout(base: impl Into<String>, chain: C, store: S, timeout: Duration) -> Result<Self, X402Error> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| {
            X402Error::new(X402ErrorKind::Unavailable, format!("cannot build the facilitator client: {e}"))
        })?;
        let base = base.into().trim_end_matches('/').to_owned();
        Ok(Facilitator { base, http, chain, store })
    }

    /// `GET /supported`.
    pub async fn supported(&self) -> Result<FacilitatorSupported, X402Error> {
        match self.exchange(reqwest::Method::GET, "/supported", None).await {
            Answer::Known(value) => serde_json::from_value(value).map_err(|e| unavailable(e.to_string())),
            Answer::Unknown(why) => Err(unavailable(why)),
        }
    }

    /// `POST /verify` of `payload` for `offer` (x402 v2 `exact`): `Ok` when the facilitator
    /// says it is valid. Claims nothing: use [`X402Verifier`](crate::method::x402::X402Verifier)
    /// for the claim.
    pub async fn verify(&self, offer: &EvmOffer, payload: &ExactPayload) -> Result<(), X402Error> {
        let body = request_body(offer, payload, offer.amount());
        match self.exchange(reqwest::Method::POST, "/verify", Some(body)).await {
            Answer::Known(value) => {
                let answer: VerifyAnswer = serde_json::from_value(value).map_err(|e| unavailable(e.to_string()))?;
                if answer.is_valid {
                    Ok(())
                } else {
                    let reason = answer.invalid_reason.unwrap_or_default();
                    Err(X402Error::new(X402ErrorKind::InvalidPayload, format!("the facilitator refused: {reason}")))
                }
            }
            Answer::Unknown(why) => Err(unavailable(why)),
        }
    }

    async fn exchange(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            request = request.header("content-type", "application/json").body(bytes);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer::Unknown(format!("facilitator unreachable: {e}")),
        };
        let status = response.status();
        if status.is_server_error() {
            return Answer::Unknown(format!("facilitator answered {status}"));
        }
        match response.bytes().await {
            Ok(bytes) if bytes.len() <= MAX_ANSWER => match serde_json::from_slice(&bytes) {
                Ok(value) => Answer::Known(value),
                Err(e) => Answer::Unknown(format!("facilitator answer is not JSON ({status}): {e}")),
            },
            Ok(_) => Answer::Unknown("facilitator answer too large".into()),
            Err(e) => Answer::Unknown(format!("facilitator answer unread: {e}")),
        }
    }

    async fn locked(&self, books: &Books<'_, S>, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        if let Some(done) = books.settled().await? {
            return Ok(done);
        }
        if verified.offer().method() != TransferMethod::Eip3009 {
            return Err(X402Error::new(
                X402ErrorKind::SettlementFailed,
                "a facilitator settles EIP-3009 payments only",
            ));
        }
        let amount = exact_amount(verified, actual)?;
        let a = verified.payload().authorization;
        let token = Token { chain: &self.chain, address: verified.offer().asset() };
        let body = request_body(verified.offer(), verified.payload(), amount);
        books.pending(amount).await?;
        let mut last = String::new();
        for _attempt in 0..2 {
            match self.exchange(reqwest::Method::POST, "/settle", Some(body.clone())).await {
                Answer::Known(value) => match serde_json::from_value::<SettleAnswer>(value) {
                    Ok(answer) if answer.success => {
                        // Its word is not enough: the token must show the authorization used.
                        return match token.authorization_used(a.from, a.nonce).await {
                            Ok(true) => {
                                let tx = answer.transaction.as_deref().and_then(|t| t.parse::<B256>().ok());
                                books.done(amount, tx).await
                            }
                            Ok(false) => Err(X402Error::new(
                                X402ErrorKind::SettlementFailed,
                                "the facilitator claimed a settlement the token does not show",
                            )),
                            Err(_) => Err(X402Error::new(
                                X402ErrorKind::SettlementPending,
                                "the facilitator claimed a settlement the token could not be asked about",
                            )),
                        };
                    }
                    Ok(answer) => {
                        // A refusal is taken at its word: a used nonce then may be the payer's
                        // own `cancelAuthorization`, no proof that anything moved.
                        let reason = answer.error_reason.unwrap_or_default();
                        return Err(X402Error::new(
                            X402ErrorKind::SettlementFailed,
                            format!("the facilitator refused: {reason}"),
                        ));
                    }
                    Err(e) => last = format!("settle answer not understood: {e}"),
                },
                Answer::Unknown(why) => last = why,
            }
            match token.authorization_used(a.from, a.nonce).await {
                Ok(true) => return books.done(amount, None).await,
                Ok(false) => {}
                Err(_) => break,
            }
        }
        Err(X402Error::new(X402ErrorKind::SettlementPending, format!("settlement outcome unknown: {last}")))
    }
}

fn unavailable(why: String) -> X402Error {
    X402Error::new(X402ErrorKind::Unavailable, why)
}

/// The requirement a payment for `offer` of `amount` answers (x402 v2 `exact`).
fn requirement(offer: &EvmOffer, amount: Amount) -> Value {
    json!({
        "scheme": "exact",
        "network": offer.network(),
        "amount": amount.to_string(),
        "asset": offer.asset().to_checksum(None),
        "payTo": offer.pay_to().to_checksum(None),
        "maxTimeoutSeconds": offer.timeout_seconds(),
        "extra": offer.extra(),
    })
}

/// `{x402Version, paymentPayload, paymentRequirements}` for `/verify` and `/settle`.
fn request_body(offer: &EvmOffer, payload: &ExactPayload, amount: Amount) -> Value {
    let requirement = requirement(offer, amount);
    json!({
        "x402Version": 2,
        "paymentPayload": { "x402Version": 2, "accepted": requirement, "payload": payload },
        "paymentRequirements": requirement,
    })
}

impl<C: X402Chain, S: ChannelStore> Facilitator<C, S> {
    /// Settles `actual` of an x402 `upto` payment (the facilitator's `upto` scheme: it sends
    /// the proxy's `settle` from its own key, the witness's facilitator). `0` calls nothing.
    /// An answer that is lost or not understood is decided by Permit2's nonce bitmap; an
    /// unused nonce is sent again, once (Permit2 lets one of two through, never both).
    pub(crate) async fn settle_upto(&self, verified: &UptoVerified, actual: Amount) -> Result<Settlement, X402Error> {
        let network = verified.offer().network();
        let books = Books::open_claim(&self.store, verified.claim(), verified.payer(), network).await?;
        let out = self.locked_upto(&books, verified, actual).await;
        books.close().await;
        out
    }

    async fn locked_upto(
        &self,
        books: &Books<'_, S>,
        verified: &UptoVerified,
        actual: Amount,
    ) -> Result<Settlement, X402Error> {
        if let Some(done) = settled_without_sending(books, verified, actual).await? {
            return Ok(done);
        }
        let a = &verified.payload().permit2_authorization;
        let offered = upto_requirement(verified.offer(), a.witness.facilitator);
        let mut settling = offered.clone();
        settling.amount = actual;
        let body = json!({
            "x402Version": 2,
            "paymentPayload": { "x402Version": 2, "accepted": offered, "payload": verified.payload() },
            "paymentRequirements": settling,
        });
        // Permit2 nonces are the payer's to burn (another permit, `invalidateUnorderedNonces`):
        // a used nonce proves this payment only when a settle of ours may have landed (an
        // earlier attempt's, or this one's with an unknown answer).
        let mut ambiguous = books.was_pending().await?;
        books.pending(actual).await?;
        let mut last = String::new();
        for _attempt in 0..2 {
            match self.exchange(reqwest::Method::POST, "/settle", Some(body.clone())).await {
                Answer::Known(value) => match serde_json::from_value::<SettleAnswer>(value) {
                    Ok(answer) if answer.success => {
                        let tx = answer.transaction.as_deref().and_then(|t| t.parse::<B256>().ok());
                        return books.done(actual, tx).await;
                    }
                    Ok(answer) => {
                        if ambiguous && upto_nonce_used(&self.chain, a).await.unwrap_or(false) {
                            return books.done(actual, None).await;
                        }
                        let reason = answer.error_reason.unwrap_or_default();
                        return Err(X402Error::new(
                            X402ErrorKind::SettlementFailed,
                            format!("the facilitator refused: {reason}"),
                        ));
                    }
                    Err(e) => last = format!("settle answer not understood: {e}"),
                },
                Answer::Unknown(why) => last = why,
            }
            ambiguous = true;
            match upto_nonce_used(&self.chain, a).await {
                Ok(true) => return books.done(actual, None).await,
                Ok(false) => {}
                Err(_) => break,
            }
        }
        Err(X402Error::new(X402ErrorKind::SettlementPending, format!("settlement outcome unknown: {last}")))
    }
}

impl<C: X402Chain, S: ChannelStore> Settle for Facilitator<C, S> {
    async fn settle(&self, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        let books = Books::open(&self.store, verified).await?;
        let out = self.locked(&books, verified, actual).await;
        books.close().await;
        out
    }
}
