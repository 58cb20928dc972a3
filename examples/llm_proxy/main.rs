//! A paid OpenAI-compatible LLM proxy: `POST /v1/chat/completions` sold per token through
//! `PaymentLayer` with Tempo payment-channel sessions (MPP `tempo` / `session`).
//!
//! ```text
//! cargo run --features full --example llm_proxy -- demo                 # the whole flow, locally
//! cargo run --features full --example llm_proxy -- demo --stay          # ...then keep serving
//! cargo run --features full --example llm_proxy -- serve [--config <file>]
//! cargo run --features full --example llm_proxy -- serve --chain local   # ...on a local chain it starts
//! ```
//!
//! `demo` starts anvil in Tempo mode (chain id 1337, Tempo's localnet), installs the v1
//! escrow and, DEV-ONLY, the v2 channel reserve stand-in, starts the proxy with the
//! built-in simulated model, and pays for one streamed completion with tollgate's own
//! client, printing the 402 and its price, the channel open, each token with the running
//! cost, each voucher, the receipt, the close, and the on-chain balances.
//!
//! `serve` reads `examples/llm_proxy.toml` (or `--config`): upstream providers, models and
//! prices, the fee, the chain, and the store (`[store] url`: `"memory"`, or a Redis or
//! PostgreSQL server that several instances share). With no upstream usable (no API key set) it serves the
//! simulated model. The payee key and the HMAC secret come from the environment variables
//! the file names. With `--chain local` it first starts anvil in Tempo mode on the port of
//! `[payment] rpc_url` (8545) with the escrow installed, as the demo does, and is paid there
//! by dev account 1 (no key to set); it prints how to point a client at it.
//!
//! `serve` is hardened for the open internet (`[server.limits]`, see `proxy/server.rs`):
//! header and body read timeouts, a cap on connections and on connections that have not sent
//! a request yet (the oldest is evicted), and a graceful shutdown on SIGTERM or Ctrl-C: no new
//! streams, streams in flight get `shutdown_grace_secs` to finish (their vouchers still come
//! in), then one final settlement pass captures what was delivered.
//!
//! Endpoints: `GET /health`; `GET /metrics` (the payment layer's series, Prometheus text
//! format); `GET /v1/models` and `GET /v1/models/{id}` (prices per 1M input and output
//! tokens, free); `POST /v1/chat/completions` (paid; streamed with `usage` and its cost when
//! asked with `stream: true`, else one `chat.completion` object with `usage` and its cost). Errors are OpenAI's `{"error": {"message", "type"}}`: 400 bad JSON or schema, 402
//! payment, 404 unknown model or path, 405 method, 413 body over 1 MiB, 429 / 502 upstream,
//! 500 internal.

// Some items serve only the tests and the load run, which include these modules too.
#[allow(dead_code)]
mod demo;
mod local;
#[allow(dead_code)]
mod proxy;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use proxy::Proxy;
use proxy::config::{Config, base_units};
use proxy::payment::PaymentSettings;
use proxy::server;
use tollgate::method::tempo::{SessionProtocol, SettlementPolicy};

const USAGE: &str = "usage: llm_proxy <demo [--stay] | serve [--chain local]> [--config <file>]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config_path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/llm_proxy.toml"));
    if let Some(i) = args.iter().position(|a| a == "--config") {
        match args.get(i + 1) {
            Some(path) => config_path = PathBuf::from(path),
            None => return fail(USAGE),
        }
    }
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string()),
    };
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&config, args.iter().any(|a| a == "--stay")).await.map(|_| ()),
        Some("serve") => match option(&args, "--chain") {
            None if args.iter().any(|a| a == "--chain") => Err(USAGE.to_owned()),
            None => serve(&config).await,
            Some("local") => local::serve(&config).await,
            Some(other) => Err(format!("--chain {other}: only `local` is known\n{USAGE}")),
        },
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The value after `name` in `args`.
fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("llm_proxy: {message}");
    ExitCode::FAILURE
}

async fn serve(config: &Config) -> Result<(), String> {
    serve_with(config, PaymentSettings::from_config(config)?).await
}

/// Serves `config`'s proxy, paid as `settings` says, until Ctrl-C.
async fn serve_with(config: &Config, settings: PaymentSettings) -> Result<(), String> {
    // An unreachable store ends the start here, before anything listens: an instance that
    // cannot reach the money state must not take traffic.
    let store = config.store.connect().await?;
    let proxy = Proxy::build_on(config, &settings, false, None, store)?;
    if proxy.catalog.is_simulated() {
        eprintln!("no upstream is usable (no API key set?): serving the SIMULATED model only");
    }
    let p = &config.payment;
    // v2 settles on its own schedule too (every 30 s when settle_every_secs is 0): its idle
    // close is how a plain-fetch client's channel gets captured and refunded.
    let settle = |every: u64| SettlementPolicy {
        every: Duration::from_secs(every),
        min_amount: base_units(p.settle_min, p.decimals).unwrap_or(0),
    };
    let policy = |protocol| match protocol {
        SessionProtocol::V2 => Some(settle(if p.settle_every_secs > 0 { p.settle_every_secs } else { 30 })),
        _ => (p.settle_every_secs > 0).then(|| settle(p.settle_every_secs)),
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let models: Vec<&str> = proxy.catalog.models().iter().map(|m| m.id.as_str()).collect();
    eprintln!(
        "llm_proxy listening on http://{addr}, selling {}, money state in {}",
        models.join(", "),
        proxy.layer.store().backend()
    );
    let limits = &config.server.limits;
    let shutdown = async {
        server::shutdown_signal().await;
        eprintln!(
            "llm_proxy: shutting down: no new connections, streams get {}s to finish",
            limits.shutdown_grace_secs
        );
    };
    server::run(&proxy, listener, limits, policy, shutdown).await
}
