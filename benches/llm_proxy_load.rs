//! Load run for the llm_proxy example: N concurrent clients, each streaming R chat
//! completions from the simulated model (no pacing) through the proxy on 127.0.0.1, with
//! and without the payment layer. Not a timed test; it prints a table.
//!
//! ```text
//! cargo bench --features full --bench llm_proxy_load
//! LOAD_CLIENTS=64 LOAD_STREAMS=8 cargo bench --features full --bench llm_proxy_load
//! ```
//!
//! Modes:
//! - **unpaid**: the same app with the layer removed;
//! - **paid, prepaid**: each client has its own channel and pays one voucher for its whole
//!   run up front, so streams never pause (the layer's per-request and per-token cost);
//! - **paid, vouchers**: each stream starts from what the channel has paid and pauses for
//!   a voucher every 256 tokens, answered on a second connection (the full protocol), on
//!   the memory store;
//! - **paid, Redis, 1 instance**: the same on a Redis store (`REDIS_URL`, default
//!   `redis://127.0.0.1:6379`, under a prefix of its own);
//! - **paid, Redis, 2 instances**: the same channels, half the clients on a second instance
//!   sharing that Redis (in the same process: the same two cores serve both).
//!
//! The Redis modes are skipped, and the run says so, when Redis does not answer.
//!
//! Client and server share the machine, and paid clients sign their vouchers (ECDSA) too.
//! Run without `--bench` (as `cargo test --all-targets` does) it is a two-client smoke run.

#[allow(dead_code)]
#[path = "../examples/llm_proxy/demo/mod.rs"]
mod demo;
#[allow(dead_code)]
#[path = "../examples/llm_proxy/proxy/mod.rs"]
mod proxy;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use bytes::Bytes;
use demo::client::{Flow, PayingClient};
use demo::stack::{Options, Stack};
use http_body_util::{BodyExt, Full};
use proxy::config::Config;
use proxy::simulated::Simulator;
use proxy::store::{ProxyStore, StoreConfig};
use serde_json::{Value, json};
use tollgate::method::tempo::PATH_USD;

alloy::sol! {
    function transfer(address to, uint256 amount) external returns (bool);
}

const CONFIG: &str = r#"
[server]
realm = "llm-proxy.load"
service_fee_percent = 10
[payment]
rpc_url = "http://127.0.0.1:9"
chain_id = 4242
escrow = "0x00000000000000000000000000000000e5c70001"
payee_key_env = "UNSET"
secret_env = "UNSET"
suggested_deposit = 1.0
voucher_window_tokens = 256
[simulated]
model = "tollgate-sim"
input_per_1m = 2.50
output_per_1m = 10.00
tokens_per_second = 0
"#;

/// One mode's result.
#[derive(Clone, Copy)]
struct Run {
    elapsed: Duration,
    streams: usize,
    tokens: u64,
    vouchers: usize,
}

impl Run {
    fn streams_per_sec(&self) -> f64 {
        self.streams as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) this is a smoke run.
    let full = std::env::args().any(|arg| arg == "--bench");
    let clients = if full { env("LOAD_CLIENTS", 32) } else { 2 };
    let per_client = if full { env("LOAD_STREAMS", 16) } else { 2 };
    let rounds = if full { env("LOAD_ROUNDS", 3) } else { 1 };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = Config::parse(CONFIG).unwrap();
        let request = json!({
            "model": "tollgate-sim",
            "messages": [{ "role": "user", "content": "Describe the load run in one paragraph." }],
            "stream": true,
        });
        let router = proxy::Proxy::unpaid(&config, true, Some(Simulator::new(0.0))).unwrap();
        let unpaid = proxy::spawn(router, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let stack = paid_stack(&config, ProxyStore::default()).await;
        // Channels pay as their streams ask: a voucher may not run far ahead of delivery
        // (`max_voucher_ahead`), so there is no "prepaid for the whole run" mode any more.
        let mut pausing = payers(&stack, &request, clients).await;
        let mut shared = shared_stacks(&config, &request, clients).await;
        println!(
            "llm_proxy load run: {clients} concurrent clients x {per_client} streams, {rounds} rounds (modes interleaved), \
             simulated upstream unpaced"
        );
        let mut runs: [Vec<Run>; 4] = Default::default();
        for _ in 0..rounds {
            runs[0].push(unpaid_run(&unpaid.url("/v1/chat/completions"), &request, clients, per_client).await);
            runs[1].push(paid_run(&mut pausing, &request, per_client).await);
            if let Some(shared) = shared.as_mut() {
                // One instance, then the same channels spread over both.
                let a = shared.stack.server.url("");
                shared.payers.iter_mut().for_each(|client| client.set_base(a.clone()));
                runs[2].push(paid_run(&mut shared.payers, &request, per_client).await);
                let b = shared.second.1.url("");
                for (i, client) in shared.payers.iter_mut().enumerate() {
                    client.set_base(if i % 2 == 0 { a.clone() } else { b.clone() });
                }
                runs[3].push(paid_run(&mut shared.payers, &request, per_client).await);
            }
        }
        let medians: Vec<Option<Run>> = runs
            .into_iter()
            .map(|mut runs| {
                runs.sort_by(|a, b| a.streams_per_sec().total_cmp(&b.streams_per_sec()));
                runs.get(runs.len() / 2).copied()
            })
            .collect();
        println!("{:<30} {:>8} {:>10} {:>11} {:>9} {:>7}", "mode (median round)", "wall s", "streams/s", "tokens/s", "vouchers", "ratio");
        let names = ["unpaid (layer removed)", "paid, memory, 1 instance", "paid, Redis, 1 instance", "paid, Redis, 2 instances"];
        let baseline = medians[0].map_or(1.0, |run| run.streams_per_sec());
        for (name, run) in names.iter().zip(&medians) {
            let Some(run) = run else {
                println!("{name:<30} skipped (Redis unreachable)");
                continue;
            };
            let secs = run.elapsed.as_secs_f64();
            println!(
                "{name:<30} {secs:>8.2} {:>10.0} {:>11.0} {:>9} {:>7.2}",
                run.streams_per_sec(),
                run.tokens as f64 / secs,
                run.vouchers,
                run.streams_per_sec() / baseline,
            );
        }
        if let (Some(memory), Some(redis), Some(two)) = (medians[1], medians[2], medians[3]) {
            println!(
                "Redis / memory (1 instance): {:.2}; 2 instances / 1 instance (Redis): {:.2}",
                redis.streams_per_sec() / memory.streams_per_sec(),
                two.streams_per_sec() / redis.streams_per_sec(),
            );
        }
    });
}

/// A chain, two proxy instances sharing one Redis, and payers with channels on it.
struct Shared {
    stack: Stack,
    second: (proxy::Proxy, proxy::Running),
    payers: Vec<PayingClient>,
}

/// The Redis modes' setup, or `None` (said) when Redis does not answer.
async fn shared_stacks(config: &Config, request: &Value, clients: usize) -> Option<Shared> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let store = StoreConfig { url: url.clone(), prefix: Some(format!("tg_load_{nanos}:")), ..StoreConfig::default() };
    let connect = || async {
        match tokio::time::timeout(Duration::from_secs(5), store.connect()).await {
            Ok(Ok(store)) => Some(store),
            Ok(Err(e)) => {
                println!("Redis modes skipped: {e}");
                None
            }
            Err(_) => {
                println!("Redis modes skipped: {url} did not answer within 5 s");
                None
            }
        }
    };
    let stack = paid_stack(config, connect().await?).await;
    let second = stack.instance(config, &options(), connect().await?).await.unwrap();
    let payers = payers(&stack, request, clients).await;
    Some(Shared { stack, second, payers })
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn unpaid_run(url: &str, request: &Value, clients: usize, per_client: usize) -> Run {
    let body = Bytes::from(request.to_string());
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, body) = (url.to_owned(), body.clone());
            tokio::spawn(async move {
                let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
                let mut tokens = 0;
                for _ in 0..per_client {
                    let request = http::Request::post(&url)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    let response = http.request(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let bytes = response.into_body().collect().await.unwrap().to_bytes();
                    tokens += usage_tokens(&bytes);
                }
                tokens
            })
        })
        .collect();
    let mut tokens = 0;
    for task in tasks {
        tokens += task.await.unwrap();
    }
    Run { elapsed: started.elapsed(), streams: clients * per_client, tokens, vouchers: 0 }
}

fn options() -> Options {
    Options {
        simulated: true,
        simulator: Some(Simulator::new(0.0)),
        voucher_window: 256,
        pause_deadline: Duration::from_secs(60),
        keep_alive: Duration::from_secs(15),
    }
}

async fn paid_stack(config: &Config, store: ProxyStore) -> Stack {
    Stack::start_on(config, options(), store).await.unwrap()
}

/// `clients` funded payers, each with its own channel, paying as their streams ask.
async fn payers(stack: &Stack, request: &Value, clients: usize) -> Vec<PayingClient> {
    let funder = stack.devnet.signer(2);
    let url = stack.devnet.rpc_url().parse().unwrap();
    let wallet = ProviderBuilder::new().wallet(EthereumWallet::from(funder)).connect_http(url);
    let mut payers = Vec::new();
    for _ in 0..clients {
        let payer = PrivateKeySigner::random();
        fund(&wallet, payer.address(), 100_000_000).await;
        let mut client = PayingClient::new(stack.server.url(""), payer);
        open(stack, &mut client, request).await;
        payers.push(client);
    }
    payers
}

async fn paid_run(clients: &mut Vec<PayingClient>, request: &Value, per_client: usize) -> Run {
    let count = clients.len();
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .drain(..)
        .map(|mut client| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut tokens, mut vouchers) = (0, 0);
                for _ in 0..per_client {
                    let streamed = client.stream(&request, |_| Flow::Continue).await.unwrap();
                    assert_eq!(streamed.status, 200);
                    assert!(streamed.receipt.is_some());
                    tokens += streamed.usage.unwrap()["total_tokens"].as_u64().unwrap();
                    vouchers += streamed.vouchers;
                }
                (client, tokens, vouchers)
            })
        })
        .collect();
    let (mut tokens, mut vouchers) = (0, 0);
    for task in tasks {
        let (client, t, v) = task.await.unwrap();
        clients.push(client);
        tokens += t;
        vouchers += v;
    }
    Run { elapsed: started.elapsed(), streams: count * per_client, tokens, vouchers }
}

async fn open(stack: &Stack, client: &mut PayingClient, request: &Value) {
    // Deposit $10: enough for every round.
    stack.open(client, request, 10_000_000).await.unwrap();
}

async fn fund(wallet: &impl Provider, to: Address, amount: u128) {
    let call = transferCall { to, amount: U256::from(amount) };
    let tx = TransactionRequest::default().to(PATH_USD).input(call.abi_encode().into());
    let receipt = wallet.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "funding transfer failed");
}

/// `usage.total_tokens` of a streamed body.
fn usage_tokens(body: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find_map(|chunk| chunk["usage"]["total_tokens"].as_u64())
        .unwrap_or(0)
}
