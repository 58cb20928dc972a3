//! The proxy's configuration file (`examples/llm_proxy.toml`), read with `toml`.
//!
//! Prices are written in dollars per million tokens, as providers publish them; they become
//! base units of the payment token (pathUSD has 6 decimals) when the catalog is built.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening, limits, fee.
    pub server: ServerConfig,
    /// The Tempo session the proxy is paid with.
    pub payment: PaymentConfig,
    /// Upstream OpenAI-compatible APIs, by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The models sold, each with its providers.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// The built-in simulated model, served when no upstream is usable.
    pub simulated: SimulatedConfig,
    /// What `llm_proxy demo` does.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Where the money state lives (default: in this process).
    #[serde(default)]
    pub store: super::store::StoreConfig,
    /// x402 `exact`, offered beside the Tempo methods (none when absent).
    #[serde(default)]
    pub x402: Option<X402Config>,
    /// Prepaid balances, offered beside the other methods (none when absent).
    #[serde(default)]
    pub prepaid: Option<PrepaidConfig>,
}

/// `[prepaid]`: prepaid balances. Payers sign in with their wallet (SIWX) at
/// `POST /v1/sign-in` and send the session token as their API key; `POST /v1/deposits`
/// credits on-chain deposits of `[payment] currency` to the treasury.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepaidConfig {
    /// The host clients reach the proxy at (with its port unless the default), as signed.
    pub domain: String,
    /// The sign-in URL, as signed (`https://<domain>/v1/sign-in`).
    pub uri: String,
    /// The EIP-155 chains a sign-in may be signed for.
    pub chain_ids: Vec<u64>,
    /// Who deposits are paid to (default: the payee key's address).
    pub treasury: Option<String>,
    /// How many confirmations a deposit needs.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How long a session token lives, in seconds.
    #[serde(default = "default_session_secs")]
    pub session_secs: u64,
}

fn default_confirmations() -> u64 {
    1
}

fn default_session_secs() -> u64 {
    900
}

/// `[x402]`: x402 `exact` on an EVM chain. The price is the Tempo one in base units, so the
/// asset must have `[payment] decimals` (USDC and pathUSD both have 6).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Config {
    /// The chain id (8453: Base).
    pub chain_id: u64,
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The token paid in (USDC on Base: `0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913`).
    pub asset: String,
    /// The token's EIP-712 domain name (`"USD Coin"` for USDC).
    pub name: String,
    /// The token's EIP-712 domain version (`"2"` for USDC).
    pub version: String,
    /// Who is paid (default: the payee key's address).
    pub pay_to: Option<String>,
    /// `"eip3009"` (x402 `exact`: the whole maximum moves once something was delivered),
    /// `"permit"` (EIP-2612: exactly what was delivered moves; what @libertai/x402 signs when
    /// offered `primaryType: "Permit"`) or `"upto"` (the x402 `upto` scheme: a Permit2
    /// transfer, exactly what was delivered moves, settled with the payee key).
    #[serde(default = "default_transfer_method")]
    pub transfer_method: String,
    /// An x402 facilitator's base URL; absent: the proxy settles with the payee's key.
    pub facilitator_url: Option<String>,
    /// How long a signed payment stays valid (the offer's `maxTimeoutSeconds`; default 300).
    pub max_timeout_seconds: Option<u64>,
    /// How long before a payment lapses the response must be over, for its settlement to
    /// land (default 30). A `permit` or `upto` completion still running then ends there
    /// (`finish_reason: "length"`) and settles what it delivered: a client's payment buys
    /// `max_timeout_seconds - settle_margin_seconds` of streaming at most.
    pub settle_margin_seconds: Option<u64>,
}

impl X402Config {
    /// The settings, paying `payee` unless `pay_to` names someone else.
    pub fn settings(
        &self,
        payee: &alloy::signers::local::PrivateKeySigner,
    ) -> Result<super::payment::X402Settings, String> {
        use tollgate::method::x402::{EvmOffer, TransferMethod};
        let address = |text: &str, what: &str| {
            text.parse::<alloy::primitives::Address>().map_err(|e| format!("x402 {what} {text}: {e}"))
        };
        let pay_to = match &self.pay_to {
            Some(text) => address(text, "pay_to")?,
            None => payee.address(),
        };
        let method = match self.transfer_method.as_str() {
            "eip3009" => TransferMethod::Eip3009,
            "permit" => TransferMethod::Permit,
            // `upto` signs no token domain: the offer's transfer method is not used.
            "upto" => TransferMethod::Eip3009,
            other => return Err(format!("x402 transfer_method {other:?}: eip3009, permit or upto")),
        };
        // A permit names its spender (payTo); settling it with the payee key needs them equal.
        if method == TransferMethod::Permit && self.facilitator_url.is_none() && pay_to != payee.address() {
            return Err("x402 transfer_method \"permit\" settled with the payee key: pay_to must be the payee's \
                        address (the permit's spender sends the transfer)"
                .into());
        }
        let timeout = self.max_timeout_seconds.unwrap_or(tollgate::method::x402::DEFAULT_MAX_TIMEOUT_SECONDS);
        let settle_margin = self.settle_margin_seconds.unwrap_or(tollgate::method::x402::DEFAULT_SETTLE_MARGIN_SECS);
        if settle_margin >= timeout {
            return Err(format!(
                "x402 settle_margin_seconds ({settle_margin}) must be below max_timeout_seconds ({timeout}): \
                 a payment must leave time to serve"
            ));
        }
        let asset = address(&self.asset, "asset")?;
        let offer = EvmOffer::new(self.chain_id, asset, &self.name, &self.version, pay_to, tollgate::Amount::ZERO)
            .transfer_method(method)
            .max_timeout_seconds(timeout);
        Ok(super::payment::X402Settings {
            offer,
            rpc_url: self.rpc_url.clone(),
            facilitator: self.facilitator_url.clone(),
            settle_margin,
        })
    }
}

impl X402Config {
    /// Whether `[x402]` offers the `upto` scheme (`transfer_method = "upto"`).
    pub fn upto(&self) -> bool {
        self.transfer_method == "upto"
    }
}

fn default_transfer_method() -> String {
    "eip3009".into()
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `serve` listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The protection space named in challenges (the API's host).
    pub realm: String,
    /// Larger request bodies are refused with 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Added on top of the upstream price, in percent.
    #[serde(default)]
    pub service_fee_percent: f64,
    /// How long an upstream has to answer with its first streamed byte.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: u64,
    /// How long a started upstream stream may stay silent before it is ended.
    #[serde(default = "default_idle_timeout")]
    pub stream_idle_timeout_secs: u64,
    /// How long a failed provider is passed over (tried only when every other one failed too).
    #[serde(default = "default_cooldown")]
    pub provider_cooldown_secs: u64,
    /// `[server.limits]`: timeouts and connection caps.
    #[serde(default)]
    pub limits: super::server::Limits,
}

/// `[payment]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The chain id.
    pub chain_id: u64,
    /// The v1 escrow contract.
    pub escrow: String,
    /// The TIP-20 token paid in (pathUSD by default).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// The token's decimals.
    #[serde(default = "default_decimals")]
    pub decimals: u32,
    /// The environment variable holding the payee's private key (it also pays the close gas).
    pub payee_key_env: String,
    /// The environment variable holding the challenge HMAC secret (random when unset).
    pub secret_env: String,
    /// The deposit suggested to clients, in dollars.
    pub suggested_deposit: f64,
    /// Tokens of headroom a stream asks for each time it runs out.
    #[serde(default = "default_window")]
    pub voucher_window_tokens: u64,
    /// How long a paused stream waits for a voucher.
    #[serde(default = "default_pause_deadline")]
    pub pause_deadline_secs: u64,
    /// How often channels are settled on chain (0: only when clients close).
    #[serde(default)]
    pub settle_every_secs: u64,
    /// The least worth a settlement transaction, in dollars.
    #[serde(default)]
    pub settle_min: f64,
    /// The session protocols offered, one challenge each: `"v2"` (the TIP-1034 channel
    /// reserve: mppx's `tempo()` client and CLI) and `"v1"` (the escrow: `sessionLegacy`).
    #[serde(default = "default_session_protocols")]
    pub session_protocols: Vec<String>,
    /// v2: close a channel idle this long, capturing exactly what was delivered (mppx's
    /// plain `fetch` never closes its channel).
    #[serde(default = "default_close_idle")]
    pub close_idle_secs: u64,
    /// How long a stream that has delivered nothing waits for the voucher covering its
    /// prompt before it ends with a `payment-error` event (at most the pause deadline).
    #[serde(default = "default_first_voucher_deadline")]
    pub first_voucher_deadline_secs: u64,
}

/// `[upstreams.<name>]`: an OpenAI-compatible API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The environment variable holding its API key. An upstream whose variable is unset is
    /// not used; one without the setting is called without a key (a local vLLM, say).
    pub api_key_env: Option<String>,
}

/// `[[models]]`: a model sold under `id`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients send as `model`.
    pub id: String,
    /// Shown in `/v1/models`.
    #[serde(default = "default_owner")]
    pub owned_by: String,
    /// Where it can be bought; the cheapest healthy one is used.
    pub providers: Vec<ProviderConfig>,
    /// Output tokens the model may bill without streaming them (hidden reasoning: set it
    /// to the reasoning budget of o-series-like models). Paid before the first content goes
    /// out, never past the request's cap. 0 (the default) suits models that stream all
    /// they bill; a hidden token is then paid for when the final `usage` shows it.
    #[serde(default)]
    pub hidden_output_tokens: u64,
}

/// `[[models.providers]]`: one upstream selling a model, and its price.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A key of `[upstreams]`.
    pub upstream: String,
    /// The model id the upstream knows (default: the model's own id).
    pub model: Option<String>,
    /// The upstream's price in dollars per million prompt tokens.
    pub input_per_1m: f64,
    /// The upstream's price in dollars per million completion tokens.
    pub output_per_1m: f64,
}

/// `[simulated]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    /// The simulated model's id.
    pub model: String,
    /// What it costs "upstream", in dollars per million prompt tokens (the fee is added).
    pub input_per_1m: f64,
    /// The same per million completion tokens.
    pub output_per_1m: f64,
    /// Streaming pace (0: as fast as possible).
    #[serde(default)]
    pub tokens_per_second: f64,
}

/// `[demo]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// The local chain's id.
    #[serde(default = "default_demo_chain")]
    pub chain_id: u64,
    /// The demo's voucher window, small so several vouchers show.
    #[serde(default = "default_demo_window")]
    pub voucher_window_tokens: u64,
    /// The channel deposit, in dollars.
    #[serde(default = "default_demo_deposit")]
    pub deposit: f64,
    /// What the demo asks.
    #[serde(default = "default_demo_prompt")]
    pub prompt: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            chain_id: default_demo_chain(),
            voucher_window_tokens: default_demo_window(),
            deposit: default_demo_deposit(),
            prompt: default_demo_prompt(),
        }
    }
}

impl Config {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Config, Box<dyn Error + Send + Sync>> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    /// Parses a configuration text.
    pub fn parse(text: &str) -> Result<Config, Box<dyn Error + Send + Sync>> {
        Ok(toml::from_str(text)?)
    }
}

/// `dollars` in base units of a token with `decimals` (rounded to the nearest unit).
pub fn base_units(dollars: f64, decimals: u32) -> Result<u128, String> {
    if !dollars.is_finite() || dollars < 0.0 {
        return Err(format!("{dollars} is not a price"));
    }
    let units = (dollars * 10f64.powi(decimals as i32)).round();
    if units > u64::MAX as f64 {
        return Err(format!("{dollars} is too large"));
    }
    Ok(units as u128)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8402))
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_upstream_timeout() -> u64 {
    60
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_cooldown() -> u64 {
    30
}
fn default_currency() -> String {
    "0x20c0000000000000000000000000000000000000".into()
}
fn default_decimals() -> u32 {
    6
}
fn default_window() -> u64 {
    256
}
fn default_pause_deadline() -> u64 {
    60
}
fn default_first_voucher_deadline() -> u64 {
    10
}
fn default_close_idle() -> u64 {
    300
}
fn default_session_protocols() -> Vec<String> {
    vec!["v2".into(), "v1".into()]
}
fn default_owner() -> String {
    "tollgate".into()
}
fn default_demo_chain() -> u64 {
    // Tempo's localnet id: the mppx CLI accepts only the chain ids of `viem/tempo/chains`.
    1337
}
fn default_demo_window() -> u64 {
    16
}
fn default_demo_deposit() -> f64 {
    0.10
}
fn default_demo_prompt() -> String {
    "Explain in one paragraph how this proxy charges for tokens.".into()
}
