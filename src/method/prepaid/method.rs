//! [`Prepaid`]: the payment method that debits a signed-in payer's prepaid balance.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alloy::primitives::Address;
use http::request;
use serde_json::{Value, json};

use super::nonce::unix;
use super::{SessionTokens, Siwx, UsageRecord};
use crate::amount::Quote;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use crate::store::{ChannelId, ChannelStore};
use crate::wire::mpp::Receipt;

/// Pays a request from the payer's prepaid balance (`prepaid:<address>` in the store).
///
/// The payer proves their wallet once, with a SIWX proof at the sign-in endpoint
/// ([`PrepaidApi`](super::PrepaidApi)), and gets a short-lived session token
/// ([`SessionTokens`]); each request then carries `Authorization: Bearer <token>`. The
/// method recognises the token before the layer looks for a payment
/// ([`PaymentMethod::authorize`]) and grants the request on the balance: a request that
/// caps its output (`max_tokens`) has its maximum reserved whole, or is refused with `402`
/// when the balance holds less; one that caps nothing has its upfront cost and a window
/// reserved, and the metering body grows that from
/// the balance as the response streams and ends it cleanly (`finish_reason: "length"` for
/// an LLM stream) when the balance runs out, and the release debits exactly what was
/// delivered, with a [`UsageRecord`] in the same store step. An upstream error is not
/// charged. A bare address (an `X-Payer` header) is never accepted: without a valid token
/// the request gets a `402` whose `prepaid` challenge carries a fresh SIWX challenge.
///
/// ```
/// use tollgate::Secret;
/// use tollgate::method::prepaid::{Prepaid, Siwx};
///
/// let secret = Secret::new("a long random secret of 32+ bytes");
/// let siwx = Siwx::new(&secret, "api.example.com", "https://api.example.com/v1/sign-in", [8453]);
/// let prepaid = Prepaid::new(siwx);
/// # let _ = prepaid;
/// ```
#[derive(Clone)]
pub struct Prepaid {
    siwx: Siwx,
    tokens: SessionTokens,
    model: Option<ModelOf>,
}

/// Reads the model a request asks for, for its usage record.
type ModelOf = Arc<dyn Fn(&request::Parts) -> Option<String> + Send + Sync>;

impl fmt::Debug for Prepaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepaid")
            .field("siwx", &self.siwx)
            .field("tokens", &self.tokens)
            .field("model", &self.model.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl Prepaid {
    /// A prepaid method whose challenges and tokens come from `siwx` (its secret).
    pub fn new(siwx: Siwx) -> Self {
        let tokens = SessionTokens::new(siwx.keys().clone());
        Prepaid { siwx, tokens, model: None }
    }

    /// How long session tokens live (default 15 minutes).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.tokens = self.tokens.ttl(ttl);
        self
    }

    /// How to read the model a request asks for (from a request extension an outer layer
    /// put there, say), so usage records name it.
    pub fn model_with(mut self, model: impl Fn(&request::Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.model = Some(Arc::new(model));
        self
    }

    /// The sign-in challenges.
    pub fn siwx(&self) -> &Siwx {
        &self.siwx
    }

    /// The session tokens.
    pub fn tokens(&self) -> &SessionTokens {
        &self.tokens
    }

    /// The store channel of `payer`'s balance: `prepaid:<lowercase address>`.
    pub fn account(payer: Address) -> ChannelId {
        ChannelId::new(format!("prepaid:{payer:#x}"))
    }
}

/// The most bytes of a request's path or model a usage record keeps.
const RECORDED_TEXT: usize = 256;

/// `text`'s first [`RECORDED_TEXT`] bytes at most, cut at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(RECORDED_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

fn refused(kind: PaymentErrorKind, detail: &'static str) -> PaymentError {
    PaymentError::new(kind, detail)
}

impl PaymentMethod for Prepaid {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, _: &Quote) -> Vec<Offer<Value>> {
        let challenge = self.siwx.challenge();
        let request = json!({ "signIn": challenge.info.uri, "siwx": challenge });
        vec![
            Offer::mpp("prepaid", "balance", request)
                .description("sign in with your wallet, then pay from your balance"),
        ]
    }

    fn pins(&self, _: &Value, _: &Value) -> bool {
        // Nothing is paid against a prepaid challenge: the token is the credential.
        false
    }

    async fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> Option<Result<Grant, PaymentError>> {
        let token = SessionTokens::bearer(&head.headers)?;
        let Some(payer) = self.tokens.check(token) else {
            let detail = "the session token is not valid or has expired: sign in again";
            return Some(Err(refused(PaymentErrorKind::VerificationFailed, detail)));
        };
        let channel = Self::account(payer);
        match store.load(&channel).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let detail = "this payer has no balance: deposit first";
                return Some(Err(refused(PaymentErrorKind::InsufficientBalance, detail)));
            }
            Err(_) => return Some(Err(refused(PaymentErrorKind::Unavailable, "the payment store is unavailable"))),
        }
        // Both are the client's to choose and a balance keeps many records: kept short.
        let (path, prompt_tokens) = (clip(head.uri.path()), quote.upfront.input);
        let model = self.model.as_ref().and_then(|model| model(head)).map(|model| clip(&model));
        let receipt = Receipt::new("prepaid", channel.to_string());
        // Recorded by the release, or, if the holder dies first, by the reclaim: both debit.
        let head = UsageRecord::head(unix(SystemTime::now()), &path, model.as_deref(), prompt_tokens);
        let grant = Grant::new(channel, Renewal::Never, receipt).payer(format!("{payer:#x}")).record_usage(
            move |cost, units| {
                let at = unix(SystemTime::now());
                UsageRecord { at, path, model, prompt_tokens, units, cost, reclaimed: false }.to_bytes()
            },
        );
        let Some(head) = head else {
            return Some(Err(refused(PaymentErrorKind::Unavailable, "the usage record cannot be written")));
        };
        let grant = grant.record_reclaimed(head);
        // A capped request's maximum, whole (the meter needs it covered before content goes
        // out); an uncapped one takes a window at a time and ends cleanly at the balance.
        Some(Ok(match quote.maximum() {
            Some(most) => grant.reserve_whole(most),
            None => grant,
        }))
    }

    async fn verify<St: ChannelStore>(&self, _: Verify<'_, Value, Value>, _: &St) -> Result<Verified, PaymentError> {
        // Unreachable through the layer (nothing pins), refused all the same.
        Err(refused(
            PaymentErrorKind::VerificationFailed,
            "sign in with SIWX and send the session token as `Authorization: Bearer`",
        ))
    }
}
