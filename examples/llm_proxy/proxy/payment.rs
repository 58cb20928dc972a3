//! The payment side: `PaymentLayer` with the Tempo session method, priced per token by the
//! request's `model`, metered with `OpenAiTokenMeter`.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use bytes::Bytes;
use http::request;
use tollgate::meter::{MakeMeter, OpenAiTokenMeter};
use tollgate::method::tempo::{RpcChain, SessionConfig, TempoSession};
use tollgate::method::{Offer, PaymentMethod, Verified, Verify};
use tollgate::scheme::Credential;
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentError, PaymentLayer, Price, Pricing, Quote};

use super::catalog::{Catalog, PER};
use super::chat::ChatRequest;

/// The layer in front of `POST /v1/chat/completions`.
pub type Layer = PaymentLayer<PricedSession, MemoryStore, ChatPricing, PromptMeter>;

/// What the payment layer needs, resolved from the configuration (or the demo's chain).
#[derive(Clone, Debug)]
pub struct PaymentSettings {
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// Its id.
    pub chain_id: u64,
    /// The v1 escrow.
    pub escrow: Address,
    /// The token.
    pub currency: Address,
    /// The payee's key (it sends the settle and close transactions).
    pub payee: PrivateKeySigner,
    /// The challenge HMAC secret.
    pub secret: Vec<u8>,
    /// The realm in challenges.
    pub realm: String,
    /// The deposit suggested to clients.
    pub suggested_deposit: Amount,
    /// Tokens of headroom per voucher.
    pub voucher_window: u64,
    /// How long a paused stream waits.
    pub pause_deadline: Duration,
    /// How often a paused stream sends a keep-alive comment.
    pub keep_alive: Duration,
    /// The token's decimals (for the challenge description).
    pub decimals: u32,
}

/// The payment layer and its store.
pub fn layer(settings: &PaymentSettings, catalog: Arc<Catalog>) -> Result<Layer, String> {
    let chain = RpcChain::new(&settings.rpc_url, settings.payee.clone()).map_err(|e| e.to_string())?;
    let config = SessionConfig::v1(settings.chain_id, settings.escrow, settings.currency, settings.payee.address())
        .suggested_deposit(settings.suggested_deposit);
    let method = PricedSession { inner: Arc::new(TempoSession::new(config, chain)), decimals: settings.decimals };
    let layer = PaymentLayer::try_new(method, MemoryStore::new(), settings.realm.clone(), &settings.secret)
        .map_err(|e| e.to_string())?;
    Ok(configure(layer, settings, catalog))
}

/// The proxy's payment settings on a layer with any method: priced per token by model with
/// the prompt's bound upfront, metered with [`PromptMeter`], and the prompt asked for in
/// the stream when a session cannot cover it (streams are all the proxy serves).
pub fn configure<M>(
    layer: PaymentLayer<M, MemoryStore>,
    settings: &PaymentSettings,
    catalog: Arc<Catalog>,
) -> PaymentLayer<M, MemoryStore, ChatPricing, PromptMeter> {
    layer
        .pricing(ChatPricing { catalog: catalog.clone() })
        .meter(PromptMeter { catalog })
        .voucher_window(settings.voucher_window)
        .pause_deadline(settings.pause_deadline)
        .keep_alive(settings.keep_alive)
        .upfront_in_stream()
}

/// The Tempo session method, with the exact per-million prices in each challenge's
/// `description` (the `amount` is the per-token output price rounded up to a base unit).
#[derive(Debug)]
pub struct PricedSession {
    /// The session method itself (shared with the settlement task, which needs its vouchers).
    pub inner: Arc<TempoSession<RpcChain>>,
    decimals: u32,
}

impl PaymentMethod for PricedSession {
    fn offers(&self, quote: &Quote) -> Vec<Offer> {
        let description = describe(&quote.price, self.decimals);
        let mut offers = self.inner.offers(quote);
        offers.iter_mut().for_each(|offer| offer.description = Some(description.clone()));
        offers
    }

    fn pins(&self, echoed: &serde_json::Value, offered: &serde_json::Value) -> bool {
        self.inner.pins(echoed, offered)
    }

    async fn verify<St: ChannelStore>(&self, verify: Verify<'_>, store: &St) -> Result<Verified, PaymentError> {
        self.inner.verify(verify, store).await
    }
}

/// `"$0.165 per 1M input tokens, $0.66 per 1M output tokens"`.
pub fn describe(price: &Price, decimals: u32) -> String {
    let per_million = |rate: tollgate::Rate| {
        let units = rate.amount().get() as f64 * PER as f64 / rate.per() as f64;
        dollars(units / 10f64.powi(decimals as i32))
    };
    format!("${} per 1M input tokens, ${} per 1M output tokens", per_million(price.input), per_million(price.output))
}

/// A dollar figure without trailing zeros (`0.165`, `11`).
pub fn dollars(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Prices a chat completion by its `model`, read from the [`ChatRequest`] the parsing
/// middleware put in the request's extensions. A request without one is a session
/// management request (a bodiless POST: open, voucher, top-up, close); it is priced as the
/// model its echoed challenge was issued for, so the challenge still matches.
#[derive(Debug)]
pub struct ChatPricing {
    /// The models.
    pub catalog: Arc<Catalog>,
}

impl Pricing for ChatPricing {
    fn quote(&self, head: &request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        if let Some(chat) = head.extensions.get::<Arc<ChatRequest>>() {
            // The parser answered unknown models with 404 already; this is not for sale.
            let quote =
                |model: &Arc<super::catalog::Model>| model.quote(chat.prompt_tokens, chat.output_cap(), chat.stream);
            return Ok(self.catalog.get(&chat.model).map(quote));
        }
        Ok(Some(self.catalog.by_unit_price(echoed_amount(head)).quote(0, None, true)))
    }
}

/// The `amount` of the challenge a credential echoes.
fn echoed_amount(head: &request::Parts) -> Option<Amount> {
    let credential = Credential::from_headers(&head.headers).ok()??;
    let request = credential.challenge.decode_request().ok()?;
    request.get("amount")?.as_str()?.parse().ok()
}

/// An [`OpenAiTokenMeter`] per request, starting from the request's prompt bound (the
/// quote's upfront, paid before the upstream is called), capped at the client's output cap
/// (the quote's `max_output`), with its model's hidden-output allowance (0 unless the
/// model is configured with `hidden_output_tokens`).
#[derive(Clone, Debug)]
pub struct PromptMeter {
    /// The models.
    pub catalog: Arc<Catalog>,
}

impl MakeMeter for PromptMeter {
    type Meter = OpenAiTokenMeter;

    fn make_meter(&self, request: &request::Parts, quote: &Quote) -> OpenAiTokenMeter {
        let chat = request.extensions.get::<Arc<ChatRequest>>();
        let prompt = chat.map_or(0, |chat| chat.prompt_tokens);
        let hidden = chat.and_then(|chat| self.catalog.get(&chat.model)).map_or(0, |model| model.hidden_output);
        let meter = OpenAiTokenMeter::with_prompt_estimate(prompt).hidden_output(hidden);
        match quote.max_output {
            Some(cap) => meter.max_output(cap),
            None => meter,
        }
    }
}

impl PaymentSettings {
    /// The settings of `config`'s `[payment]`, keys read from the environment.
    pub fn from_config(config: &super::config::Config) -> Result<PaymentSettings, String> {
        let p = &config.payment;
        let address = |text: &str, what: &str| text.parse::<Address>().map_err(|e| format!("{what} {text}: {e}"));
        let key = std::env::var(&p.payee_key_env)
            .map_err(|_| format!("set {} to the payee's private key (0x…)", p.payee_key_env))?;
        let payee: PrivateKeySigner = key.trim().parse().map_err(|e| format!("{}: {e}", p.payee_key_env))?;
        let secret = match std::env::var(&p.secret_env) {
            Ok(secret) if secret.len() >= 32 => secret.into_bytes(),
            Ok(_) => return Err(format!("{} must hold at least 32 bytes", p.secret_env)),
            Err(_) => {
                eprintln!("warning: {} is unset; challenges are signed with a random per-process secret", p.secret_env);
                PrivateKeySigner::random().to_bytes().to_vec()
            }
        };
        Ok(PaymentSettings {
            rpc_url: p.rpc_url.clone(),
            chain_id: p.chain_id,
            escrow: address(&p.escrow, "escrow")?,
            currency: address(&p.currency, "currency")?,
            payee,
            secret,
            realm: config.server.realm.clone(),
            suggested_deposit: Amount::new(super::config::base_units(p.suggested_deposit, p.decimals)?),
            voucher_window: p.voucher_window_tokens,
            pause_deadline: Duration::from_secs(p.pause_deadline_secs),
            keep_alive: Duration::from_secs(15),
            decimals: p.decimals,
        })
    }
}
