//! The payment side: `PaymentLayer` with the Tempo session method, priced per token by the
//! request's `model`, metered with `OpenAiTokenMeter`.
//!
//! Every method is offered on the same route, one challenge each: the two session protocols
//! (v2 first), then a Tempo charge of the whole request at its maximum price (when the
//! request caps its output), for clients that do not want a channel.
//!
//! The session protocols:
//! v2 (TIP-1034 channel reserve) is what mppx's `tempo()` client, its plain `fetch` and the
//! `mppx` CLI pay; v1 (the escrow contract) is what `sessionLegacy` and tollgate's own
//! `SessionClient` pay. A client takes the challenge it can handle. `[payment]
//! session_protocols` narrows the list.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use bytes::Bytes;
use http::request;
use tollgate::meter::{MakeMeter, OpenAiTokenMeter};
use tollgate::method::tempo::chain::{ChainError, Mined, OnChainChannel, ReserveState};
use tollgate::method::tempo::{ChargeConfig, RpcChain, SessionConfig, TempoChain, TempoCharge, TempoSession};
use tollgate::method::x402::{
    self, EvmOffer, Facilitator, OnChainSettler, Settle, Settlement, X402Error, X402Exact, X402Upto,
};
use tollgate::{Amount, PaymentError, PaymentLayer, Price, Pricing, Quote, Secret};

use super::catalog::{Catalog, PER};
use super::chat::ChatRequest;
use super::store::ProxyStore;

/// A Tempo session the proxy offers (shared with its settlement loop), if configured.
pub type Session = Option<Arc<TempoSession<ProxyChain>>>;

/// The x402 method the proxy offers (`exact` or `upto`: an `accepts` entry beside the
/// challenges), if `[x402]` is configured.
pub type X402 = Option<Arc<super::x402::ProxyX402>>;

/// Prepaid balances (a signed-in payer's session token as the API key), if `[prepaid]` is
/// configured.
pub type PrepaidBalance = Option<Arc<tollgate::method::prepaid::Prepaid>>;

/// The proxy's methods: the v2 session, the v1 session (each if configured), a
/// whole-request charge, one challenge each, in that order, x402 `exact` and prepaid
/// balances if configured.
pub type ProxyMethods = (Session, Session, TempoCharge<ProxyChain>, X402, PrepaidBalance);

/// The layer in front of `POST /v1/chat/completions`: the sessions and a whole-request
/// charge, all in one 402.
pub type Layer = PaymentLayer<ProxyMethods, ProxyStore, ChatPricing, PromptMeter>;

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
    /// Which session protocols are offered, and a dev chain's broadcast step.
    pub sessions: Sessions,
    /// x402 `exact` on an EVM chain, offered beside the Tempo methods (`[x402]`).
    pub x402: Option<X402Settings>,
    /// Offer `x402` as the `upto` scheme (Permit2, settled with the payee's key) instead of
    /// `exact` (`[x402] transfer_method = "upto"`).
    pub x402_upto: bool,
}

/// x402 `exact` as the proxy offers it: the offer (its amount is each request's maximum
/// price, so the asset must have the Tempo token's decimals), where the chain is, and who
/// settles.
#[derive(Clone, Debug)]
pub struct X402Settings {
    /// The chain, token, EIP-712 domain, payee and transfer method.
    pub offer: EvmOffer,
    /// The chain's JSON-RPC URL (verification reads the token there).
    pub rpc_url: String,
    /// An x402 facilitator's base URL; `None`: the proxy settles with the payee's key.
    pub facilitator: Option<String>,
    /// Seconds before a payment lapses by which its response must be over.
    pub settle_margin: u64,
}

/// How the proxy settles x402 payments.
#[derive(Clone, Debug)]
pub enum X402Settler {
    /// On chain, with the payee's key (it pays the gas).
    OnChain(OnChainSettler<RpcChain, ProxyStore>),
    /// Through an x402 facilitator.
    Facilitator(Facilitator<RpcChain, ProxyStore>),
}

impl Settle for X402Settler {
    async fn settle(&self, verified: &x402::Verified, actual: Amount) -> Result<Settlement, X402Error> {
        match self {
            X402Settler::OnChain(settler) => settler.settle(verified, actual).await,
            X402Settler::Facilitator(settler) => settler.settle(verified, actual).await,
        }
    }
}

/// The x402 method of `settings`, keeping its claims and settlements in `store`.
fn x402_method(settings: &PaymentSettings, store: &ProxyStore) -> Result<X402, String> {
    let Some(x402) = &settings.x402 else { return Ok(None) };
    let chain = RpcChain::new(&x402.rpc_url, settings.payee.clone()).map_err(|e| e.to_string())?;
    if settings.x402_upto {
        if x402.facilitator.is_some() {
            return Err("x402 upto: the proxy settles it with the payee key; remove facilitator_url".into());
        }
        let method = X402Upto::new(x402.offer.clone(), chain, store.clone())
            .settle_margin(x402.settle_margin)
            .on_settlement(log_settlement);
        return Ok(Some(Arc::new(super::x402::ProxyX402::Upto(method))));
    }
    let settler = match &x402.facilitator {
        Some(url) => X402Settler::Facilitator(
            Facilitator::new(url.clone(), chain.clone(), store.clone()).map_err(|e| e.to_string())?,
        ),
        None => X402Settler::OnChain(OnChainSettler::new(chain.clone(), store.clone())),
    };
    let method = X402Exact::new(x402.offer.clone(), chain, settler)
        .settle_margin(x402.settle_margin)
        .on_settlement(log_settlement);
    Ok(Some(Arc::new(super::x402::ProxyX402::Exact(method))))
}

fn log_settlement(outcome: x402::SettlementOutcome) {
    if let Some(Err(e)) = outcome {
        eprintln!("x402: settlement failed: {e}");
    }
}

/// Which session protocols the proxy offers.
#[derive(Clone, Debug)]
pub struct Sessions {
    /// v1: the escrow contract (`escrow`).
    pub v1: bool,
    /// v2: the TIP-1034 channel reserve.
    pub v2: bool,
    /// Run before every broadcast, serialized with it. Only a dev chain sets it (the demo's
    /// v2 reserve stand-in must be told each open's expiring-nonce hash); never in `serve`.
    pub before_broadcast: Option<Arc<dyn BeforeBroadcast>>,
    /// v2: a settlement pass closes a channel idle this long, capturing exactly what was
    /// delivered. mppx's plain `fetch` never closes its channel, so without this its
    /// deposit stays locked and its windowed vouchers stay uncaptured.
    pub close_idle_after: Option<Duration>,
    /// How long a stream that has delivered nothing waits for the voucher covering its
    /// prompt (at most the pause deadline). mppx's v1 plain client (`sessionLegacy` with
    /// `fetch`) never answers in-band asks: its stream ends with a `payment-error` event
    /// this soon, charged nothing, instead of an empty stream held for the pause deadline.
    pub first_voucher_deadline: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            v1: true,
            v2: true,
            before_broadcast: None,
            close_idle_after: Some(Duration::from_secs(300)),
            first_voucher_deadline: Duration::from_secs(10),
        }
    }
}

impl Sessions {
    /// The protocols named in `[payment] session_protocols` (`"v1"`, `"v2"`).
    pub fn named(names: &[String]) -> Result<Sessions, String> {
        let mut sessions = Sessions { v1: false, v2: false, ..Sessions::default() };
        for name in names {
            match name.as_str() {
                "v1" => sessions.v1 = true,
                "v2" => sessions.v2 = true,
                other => return Err(format!("session_protocols: unknown protocol {other:?} (v1 or v2)")),
            }
        }
        if !(sessions.v1 || sessions.v2) {
            return Err("session_protocols: name at least one of v1, v2".into());
        }
        Ok(sessions)
    }
}

/// A future a [`BeforeBroadcast`] returns.
pub type BroadcastStep<'a> = Pin<Box<dyn Future<Output = Result<(), ChainError>> + Send + 'a>>;

/// A step run before a raw transaction is broadcast (see [`Sessions::before_broadcast`]).
pub trait BeforeBroadcast: fmt::Debug + Send + Sync + 'static {
    /// Prepares the chain for `raw`.
    fn before<'a>(&'a self, raw: &'a Bytes) -> BroadcastStep<'a>;
}

/// The proxy's chain: JSON-RPC, with a dev chain's [`BeforeBroadcast`] step if any.
#[derive(Clone, Debug)]
pub struct ProxyChain {
    inner: RpcChain,
    before: Option<(Arc<dyn BeforeBroadcast>, Serial)>,
}

/// Serializes a [`BeforeBroadcast`] step with its broadcast.
type Serial = Arc<tokio::sync::Mutex<()>>;

impl TempoChain for ProxyChain {
    async fn channel(&self, escrow: Address, id: B256) -> Result<OnChainChannel, ChainError> {
        self.inner.channel(escrow, id).await
    }

    async fn broadcast(&self, raw: alloy::primitives::Bytes) -> Result<Mined, ChainError> {
        let Some((step, lock)) = &self.before else { return self.inner.broadcast(raw).await };
        // The step and the broadcast run as one, so two opens cannot interleave.
        let _serial = lock.lock().await;
        let bytes = Bytes::copy_from_slice(&raw);
        step.before(&bytes).await?;
        self.inner.broadcast(raw).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<Mined>, ChainError> {
        self.inner.receipt(hash).await
    }

    async fn send(&self, to: Address, input: alloy::primitives::Bytes) -> Result<Mined, ChainError> {
        self.inner.send(to, input).await
    }

    async fn reserve_state(&self, reserve: Address, id: B256) -> Result<ReserveState, ChainError> {
        self.inner.reserve_state(reserve, id).await
    }
}

/// The payment layer, keeping its money state in `store`.
pub fn layer(
    settings: &PaymentSettings,
    catalog: Arc<Catalog>,
    store: ProxyStore,
    prepaid: PrepaidBalance,
) -> Result<Layer, String> {
    let inner = RpcChain::new(&settings.rpc_url, settings.payee.clone()).map_err(|e| e.to_string())?;
    let before = settings.sessions.before_broadcast.clone().map(|step| (step, Arc::default()));
    let chain = ProxyChain { inner, before };
    let (chain_id, currency, payee) = (settings.chain_id, settings.currency, settings.payee.address());
    let decimals = settings.decimals;
    // The exact per-million prices in words (the `amount` is the per-token output price
    // rounded up to a base unit), and a non-streamed request's whole maximum as its amount.
    let priced = move |session: TempoSession<ProxyChain>| {
        session.description(move |quote| describe(&quote.price, decimals)).amount(whole_request)
    };
    let v1 = settings.sessions.v1.then(|| {
        let ahead = v1_run_ahead(&catalog, settings.voucher_window);
        let config = SessionConfig::v1(chain_id, settings.escrow, currency, payee)
            .suggested_deposit(settings.suggested_deposit)
            .max_voucher_ahead(ahead);
        Arc::new(priced(TempoSession::new(config, chain.clone())))
    });
    let v2 = settings.sessions.v2.then(|| {
        let mut v2 = TempoSession::new(
            SessionConfig::v2(chain_id, currency, payee)
                .suggested_deposit(settings.suggested_deposit)
                // v2 captures exactly what was delivered, so a voucher ahead costs the
                // payer nothing (refunded at close). mppx's plain client signs
                // `accepted + amount` on each new request, and `accepted` can sit far
                // above what was charged once a stream's one-token-per-byte bound is
                // lowered to the upstream's usage: the default bound (two windows)
                // would refuse its second request.
                .max_voucher_ahead(Amount::new(u128::MAX)),
            chain.clone(),
        );
        if let Some(after) = settings.sessions.close_idle_after {
            v2 = v2.close_idle_after(after);
        }
        Arc::new(priced(v2))
    });
    // A client that does not want a channel pays the whole request at its maximum (prompt
    // bound and output cap), settled at once. A request without an output cap (a stream
    // without `max_tokens`) has no maximum and is offered the sessions alone.
    let charge = TempoCharge::new(ChargeConfig::new(chain_id, currency, payee), chain.clone())
        .map_err(|e| e.to_string())?
        .whole_request();
    let x402 = x402_method(settings, &store)?;
    let layer = PaymentLayer::try_new(
        (v2, v1, charge, x402, prepaid),
        store,
        settings.realm.clone(),
        Secret::new(&settings.secret),
    )
    .map_err(|e| e.to_string())?;
    Ok(configure(layer, settings, catalog))
}

/// The proxy's payment settings on a layer with any method: priced per token by model with
/// the prompt's bound upfront, metered with [`PromptMeter`], and the prompt asked for in
/// the stream when a session cannot cover it (streams are all the proxy serves).
pub fn configure<M, St>(
    layer: PaymentLayer<M, St>,
    settings: &PaymentSettings,
    catalog: Arc<Catalog>,
) -> PaymentLayer<M, St, ChatPricing, PromptMeter> {
    layer
        .pricing(ChatPricing { catalog: catalog.clone() })
        .meter(PromptMeter { catalog })
        .voucher_window(settings.voucher_window)
        .pause_deadline(settings.pause_deadline)
        .first_voucher_deadline(settings.sessions.first_voucher_deadline.min(settings.pause_deadline))
        .keep_alive(settings.keep_alive)
        .upfront_in_stream()
}

/// The sessions `methods` offers (each settles its own channels): v2, then v1.
pub fn sessions(methods: &ProxyMethods) -> impl Iterator<Item = &Arc<TempoSession<ProxyChain>>> {
    methods.0.iter().chain(methods.1.iter())
}

/// How far a v1 voucher may run ahead: two voucher windows and four tokens at the cheapest
/// output price sold. Set for the whole channel, not per route (the default follows the
/// price of the request the voucher comes with, so a voucher posted with a dear model's
/// challenge could run far ahead and be spent on a cheap one). The v1 escrow pays out a
/// voucher exactly, so this bounds what a v1 close can leave uncaptured; longer asks (a
/// prompt paid up front) are recorded in the store and allowed while they are live.
fn v1_run_ahead(catalog: &Catalog, window: u64) -> Amount {
    let tokens = window.saturating_mul(2).saturating_add(4);
    let cheapest = catalog.models().iter().filter_map(|model| model.price.output.cost(tokens)).min();
    cheapest.unwrap_or(Amount::ZERO)
}

/// What a non-streamed request costs at most (its prompt bound and its whole output cap),
/// as the challenge's `amount`; `None` for streams, which ask for vouchers as they go.
///
/// A JSON answer cannot pause for a voucher, and mppx's plain clients (v1 and v2) answer a
/// 402 by signing a voucher `amount` above their last one: with the whole request as the
/// amount, that voucher covers it, and the retry is served.
fn whole_request(quote: &Quote) -> Option<Amount> {
    (quote.upfront.output > 0).then(|| quote.price.cost(quote.upfront)).flatten()
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
/// middleware put in the request's extensions. A session's management requests (bodiless
/// POSTs: open, voucher, top-up, close) never get here: the session recognises them before
/// pricing. Another request without a chat (a bodiless POST with no credential) is priced
/// as the first model streamed, so it is answered with challenges.
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
        Ok(self.catalog.models().first().map(|model| model.quote(0, None, true)))
    }
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
        let x402 = config.x402.as_ref().map(|x| x.settings(&payee)).transpose()?;
        let x402_upto = config.x402.as_ref().is_some_and(|x| x.upto());
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
            sessions: Sessions {
                close_idle_after: Some(Duration::from_secs(p.close_idle_secs)),
                first_voucher_deadline: Duration::from_secs(p.first_voucher_deadline_secs),
                ..Sessions::named(&p.session_protocols)?
            },
            x402,
            x402_upto,
        })
    }
}
