//! The models sold: their providers (cheapest first, with health), and their price to
//! clients (the cheapest provider's price plus the service fee).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use serde_json::{Value, json};
use tollgate::{Amount, Price, Quote, Rate, Usage};

use super::config::{Config, base_units};

/// Tokens a price is quoted for.
pub const PER: u64 = 1_000_000;

/// An OpenAI-compatible API the proxy buys from.
#[derive(Debug)]
pub struct Upstream {
    /// Its name in the configuration.
    pub name: String,
    /// `<base_url>/chat/completions`.
    pub chat_url: Uri,
    /// The `Authorization: Bearer` key, when it takes one.
    pub api_key: Option<String>,
}

/// One upstream selling one model.
#[derive(Debug)]
pub struct Provider {
    /// Where.
    pub upstream: Arc<Upstream>,
    /// The upstream's id of the model.
    pub model: String,
    /// Its price per [`PER`] prompt tokens, in base units.
    pub input_cost: u128,
    /// Its price per [`PER`] completion tokens, in base units.
    pub output_cost: u128,
    /// When it last failed.
    pub health: Health,
}

/// A provider's health: after a failure it is passed over for a cool-down.
#[derive(Debug)]
pub struct Health {
    down_until: Mutex<Option<Instant>>,
    cooldown: Duration,
}

impl Health {
    /// Healthy, with `cooldown` after each failure.
    pub fn new(cooldown: Duration) -> Self {
        Health { down_until: Mutex::new(None), cooldown }
    }

    /// Whether it is out of its cool-down.
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|until| now >= until)
    }

    /// Records a failure.
    pub fn failed(&self) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.cooldown);
    }

    /// Records a success.
    pub fn succeeded(&self) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A model as sold.
#[derive(Debug)]
pub struct Model {
    /// The id clients ask for.
    pub id: String,
    /// Shown in `/v1/models`.
    pub owned_by: String,
    /// Per-token price to clients, fee included (rates per [`PER`] tokens).
    pub price: Price,
    /// Its providers, cheapest first; empty for the simulated model.
    pub providers: Vec<Arc<Provider>>,
    /// The hidden-output allowance of its meter (`hidden_output_tokens`; 0 for the
    /// simulated model, which hides nothing).
    pub hidden_output: u64,
}

impl Model {
    /// Whether the built-in simulated model serves it.
    pub fn is_simulated(&self) -> bool {
        self.providers.is_empty()
    }

    /// The providers to try, in order: the healthy ones cheapest first, then the ones in
    /// their cool-down (better a recently failed provider than none).
    pub fn candidates(&self, now: Instant) -> Vec<Arc<Provider>> {
        let (mut healthy, resting): (Vec<_>, Vec<_>) =
            self.providers.iter().cloned().partition(|p| p.health.is_healthy(now));
        healthy.extend(resting);
        healthy
    }

    /// What a request for this model is quoted: the per-token price, upfront the bound of
    /// its prompt tokens (`prompt_tokens`, see
    /// [`prompt_token_bound`](super::chat::prompt_token_bound)), and the client's output
    /// cap (`max_completion_tokens` / `max_tokens` times `n`) as
    /// [`Quote::max_output`]: the meter never counts hidden output past it.
    ///
    /// The upfront is paid before the upstream is called: the proxy buys the prompt the
    /// moment it forwards it. A client whose channel cannot cover it (mppx opens with one
    /// unit) is asked for it in band: the payment layer answers with an event stream that
    /// starts with a `payment-need-voucher` and calls the upstream only once the voucher
    /// has landed (see `PaymentLayer::upfront_in_stream`).
    ///
    /// A **non-streamed** request (`stream` absent or false) cannot be asked for more once
    /// its answer is under way (its client reads one JSON object, not events), so its
    /// upfront also holds the whole output cap when it names one: the client's cap is the
    /// price cap, checked before the upstream is called.
    pub fn quote(&self, prompt_tokens: u64, cap: Option<u64>, stream: bool) -> Quote {
        let output = if stream { 0 } else { cap.unwrap_or(0) };
        let quote = Quote::new(self.price.clone()).upfront(Usage { input: prompt_tokens, output });
        match cap {
            Some(cap) => quote.max_output(cap),
            None => quote,
        }
    }
}

/// Every model sold.
#[derive(Debug)]
pub struct Catalog {
    models: Vec<Arc<Model>>,
    by_id: HashMap<String, usize>,
    decimals: u32,
    currency: String,
}

impl Catalog {
    /// The models of `config` whose upstreams are usable, or, when none is (no upstream
    /// configured, no API key set) or `simulated` is asked for, the simulated model alone.
    pub fn from_config(config: &Config, simulated: bool) -> Result<Catalog, String> {
        let decimals = config.payment.decimals;
        let fee_bps = fee_basis_points(config.server.service_fee_percent)?;
        let cooldown = Duration::from_secs(config.server.provider_cooldown_secs);
        let upstreams = if simulated { HashMap::new() } else { usable_upstreams(config)? };
        let mut models = Vec::new();
        for model in &config.models {
            let mut providers = Vec::new();
            for p in &model.providers {
                let Some(upstream) = upstreams.get(&p.upstream) else { continue };
                providers.push(Arc::new(Provider {
                    upstream: upstream.clone(),
                    model: p.model.clone().unwrap_or_else(|| model.id.clone()),
                    input_cost: base_units(p.input_per_1m, decimals)?,
                    output_cost: base_units(p.output_per_1m, decimals)?,
                    health: Health::new(cooldown),
                }));
            }
            providers.sort_by_key(|p| (p.input_cost + p.output_cost, p.input_cost));
            let Some(cheapest) = providers.first() else { continue };
            let price = token_price(cheapest.input_cost, cheapest.output_cost, fee_bps);
            let (id, owned_by, hidden_output) = (model.id.clone(), model.owned_by.clone(), model.hidden_output_tokens);
            models.push(Model { id, owned_by, price, providers, hidden_output });
        }
        if models.is_empty() {
            let sim = &config.simulated;
            let price =
                token_price(base_units(sim.input_per_1m, decimals)?, base_units(sim.output_per_1m, decimals)?, fee_bps);
            let owned_by = "tollgate (SIMULATED: no upstream configured)".to_owned();
            models.push(Model { id: sim.model.clone(), owned_by, price, providers: Vec::new(), hidden_output: 0 });
        }
        let models: Vec<Arc<Model>> = models.into_iter().map(Arc::new).collect();
        let by_id = models.iter().enumerate().map(|(i, m)| (m.id.clone(), i)).collect();
        Ok(Catalog { models, by_id, decimals, currency: config.payment.currency.clone() })
    }

    /// The model called `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Model>> {
        self.by_id.get(id).map(|&i| &self.models[i])
    }

    /// Every model, in configuration order.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    /// Whether only the simulated model is sold.
    pub fn is_simulated(&self) -> bool {
        self.models.iter().all(|m| m.is_simulated())
    }

    /// The token paid in, as configured.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The token's decimals.
    pub fn decimals(&self) -> u32 {
        self.decimals
    }

    /// Base units as dollars.
    pub fn dollars(&self, units: u128) -> f64 {
        units as f64 / 10f64.powi(self.decimals as i32)
    }

    /// The `GET /v1/models` body: every model sold, with its price.
    pub fn list(&self) -> Value {
        let data: Vec<Value> = self.models.iter().map(|m| self.describe(m)).collect();
        json!({ "object": "list", "data": data })
    }

    /// The `GET /v1/models/{id}` body: OpenAI's model object with the price to clients.
    pub fn describe(&self, m: &Model) -> Value {
        json!({
            "id": m.id,
            "object": "model",
            "created": 0,
            "owned_by": m.owned_by,
            "pricing": {
                "input_per_1m": self.dollars(m.price.input.amount().get()),
                "output_per_1m": self.dollars(m.price.output.amount().get()),
                "currency": "USD",
                "asset": self.currency,
                "decimals": self.decimals,
            },
        })
    }
}

/// The upstreams with a base URL and, when they need one, their key.
fn usable_upstreams(config: &Config) -> Result<HashMap<String, Arc<Upstream>>, String> {
    let mut usable = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let api_key = match &upstream.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => continue,
            },
            None => None,
        };
        if api_key.as_deref().is_some_and(|key| http::HeaderValue::from_str(&format!("Bearer {key}")).is_err()) {
            return Err(format!("upstream {name}: the API key is not a valid header value"));
        }
        let url = format!("{}/chat/completions", upstream.base_url.trim_end_matches('/'));
        let chat_url: Uri = url.parse().map_err(|e| format!("upstream {name}: bad base_url: {e}"))?;
        if !matches!(chat_url.scheme_str(), Some("http" | "https")) {
            return Err(format!("upstream {name}: base_url must be http or https"));
        }
        usable.insert(name.clone(), Arc::new(Upstream { name: name.clone(), chat_url, api_key }));
    }
    Ok(usable)
}

fn fee_basis_points(percent: f64) -> Result<u128, String> {
    if !percent.is_finite() || !(0.0..=1000.0).contains(&percent) {
        return Err(format!("service_fee_percent {percent} is out of range"));
    }
    Ok((percent * 100.0).round() as u128)
}

/// Input and output rates per [`PER`] tokens with the fee on top, rounded up.
fn token_price(input_cost: u128, output_cost: u128, fee_bps: u128) -> Price {
    let with_fee = |cost: u128| Amount::new((cost * (10_000 + fee_bps)).div_ceil(10_000));
    Price::tokens(Rate::new(with_fee(input_cost), PER), Rate::new(with_fee(output_cost), PER))
}
