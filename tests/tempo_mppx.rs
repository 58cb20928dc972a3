//! Interop, the proof: the real mppx 0.11 `sessionLegacy` client (node) pays a metered SSE
//! stream served through `PaymentLayer` + `TempoSession` (v1 escrow) on a local Tempo chain:
//! 402 → open on chain → the stream runs out of headroom → vouchers on bodiless POSTs →
//! the stream resumes → payment-receipt → top-up → close, with on-chain balances checked.

#![cfg(feature = "tempo")]

mod chain;
mod tempo_support;

use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::Address;
use serde_json::Value;
use tempo_support::onchain::{ESCROW, balance, channel as channel_on_chain, install_escrow};
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{PATH_USD, RpcChain, SessionConfig, TempoSession};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};

const CHAIN_ID: u64 = 4242;
const SECRET: &str = "tempo-interop-secret-of-at-least-32-bytes";
const PRICE: u128 = 1_000;
const TOKENS: usize = 20;

struct Run {
    lines: Vec<Value>,
}

impl Run {
    fn of(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.lines.iter().filter(move |l| l["kind"] == kind)
    }
    fn events(&self, name: &str) -> Vec<&Value> {
        self.of("event").filter(|l| l["event"] == name).collect()
    }
}

async fn run_mppx(url: &str, anvil: &AnvilInstance, payer_key: &str, extra: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mppx_session_client.mjs"))
        .env("URL", url)
        .env("RPC_URL", anvil.endpoint())
        .env("PRIVATE_KEY", payer_key)
        .env("CHAIN_ID", CHAIN_ID.to_string())
        .env("ESCROW", ESCROW.to_checksum(None))
        .env("TIMEOUT_MS", "90000")
        .kill_on_drop(true);
    for (k, v) in extra {
        command.env(k, v);
    }
    let output =
        tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("mppx client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "mppx client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    Run { lines: stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() }
}

fn key_hex(anvil: &AnvilInstance, n: usize) -> String {
    format!("0x{}", alloy::hex::encode(anvil.nth_key(n).unwrap().to_bytes()))
}

async fn paid_server(anvil: &AnvilInstance, store: MemoryStore, window: u64) -> (tempo_support::Server, Address) {
    serve_priced(anvil, store, Some(window), PRICE, TOKENS).await
}

/// A paid server streaming `tokens` events at `price` each; `window: None` keeps the
/// layer's default voucher window.
async fn serve_priced(
    anvil: &AnvilInstance,
    store: MemoryStore,
    window: Option<u64>,
    price: u128,
    tokens: usize,
) -> (tempo_support::Server, Address) {
    let payee = chain::dev_signer(anvil, 1);
    let recipient = payee.address();
    let rpc = RpcChain::new(&anvil.endpoint(), payee).unwrap();
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, recipient).suggested_deposit(Amount::new(100_000));
    let mut layer = PaymentLayer::new(TempoSession::new(config, rpc), store, "127.0.0.1", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(price))))
        .meter(EventMeter::default());
    if let Some(window) = window {
        layer = layer.voucher_window(window);
    }
    (tempo_support::serve(layer, tokens, Duration::from_millis(1)).await, recipient)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_v1_client_streams_pays_vouchers_tops_up_and_closes_exactly() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    install_escrow(&anvil).await;
    let store = MemoryStore::new();
    let (server, payee) = paid_server(&anvil, store.clone(), 0).await;
    let payer = chain::dev_signer(&anvil, 2).address();
    let (payee_before, payer_before) = (balance(&anvil, payee).await, balance(&anvil, payer).await);

    let run = run_mppx(&server.url("/v1/stream"), &anvil, &key_hex(&anvil, 2), &[("MAX_DEPOSIT", "1")]).await;

    let messages: Vec<_> = run.events("message").iter().map(|e| e["data"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<_> = (0..TOKENS).map(|i| format!("tok{i}")).chain(["[DONE]".to_owned()]).collect();
    assert_eq!(messages, expected, "every token arrived once, in order");
    let needs = run.events("payment-need-voucher");
    assert_eq!(needs.len(), TOKENS - 1, "window 0: one voucher per token after the open");
    let receipt = &run.events("payment-receipt")[0]["data"];
    assert_eq!(receipt["spent"], (PRICE * TOKENS as u128).to_string());
    let done = run.of("done").next().expect("a done line");
    let channel_id: alloy::primitives::B256 = done["channelId"].as_str().unwrap().parse().unwrap();

    let state = store.load(&ChannelId::new(format!("{channel_id:#x}"))).await.unwrap().unwrap();
    assert!(state.finalized);
    assert_eq!(state.spent, Amount::new(PRICE * TOKENS as u128));
    assert_eq!(state.reserved, Amount::ZERO);
    let on_chain = channel_on_chain(&anvil, channel_id).await;
    assert!(on_chain._0, "finalized on chain");
    let delivered = PRICE * TOKENS as u128;
    assert_eq!(on_chain._7, delivered, "the escrow settled exactly what was delivered");
    let deposit = on_chain._6;
    assert_eq!(deposit, 100_000 + 250_000, "suggested deposit plus the harness top-up");
    // The escrow holds nothing for this channel any more: the payee got what was delivered and
    // the payer the rest (the payer's own transactions also pay fees in pathUSD).
    let payee_gain = balance(&anvil, payee).await as i128 - payee_before as i128;
    let payer_loss = payer_before as i128 - balance(&anvil, payer).await as i128;
    assert_eq!(payee_gain, delivered as i128, "the payee got exactly what was delivered");
    // The payer paid what it received plus its own transactions' fees (paid in pathUSD).
    assert!(payer_loss >= delivered as i128 && payer_loss < delivered as i128 + 50_000, "payer loss {payer_loss}");
    assert_eq!(balance(&anvil, ESCROW).await, 0, "nothing left in escrow");
}

/// Scenario 3 with the real client: three completions of 130 tokens on one channel, then
/// mppx's close (a voucher for its highest accepted amount). v1 captures the highest
/// voucher at or below what was delivered, so the payer never pays for undelivered tokens;
/// what the payee may lose is below one voucher step: the window the stream asks ahead,
/// plus one frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_03_mppx_v1_three_completions_then_close_capture_within_the_bound() {
    const PRICE_3: u128 = 10;
    const TOKENS_3: usize = 130;
    const WINDOW: u128 = 256; // the layer's default
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    install_escrow(&anvil).await;
    let store = MemoryStore::new();
    let (server, payee) = serve_priced(&anvil, store.clone(), None, PRICE_3, TOKENS_3).await;
    let payee_before = balance(&anvil, payee).await;
    let env = [("REQUESTS", "3"), ("TOPUP_AMOUNT_RAW", "0"), ("MAX_DEPOSIT", "1")];
    let run = run_mppx(&server.url("/v1/stream"), &anvil, &key_hex(&anvil, 3), &env).await;

    let tokens = run.events("message").iter().filter(|e| e["data"] != "[DONE]").count();
    assert_eq!(tokens, 3 * TOKENS_3, "every token of the three completions arrived");
    let vouchers = run.of("http").filter(|l| l["action"] == "voucher").count();
    let done = run.of("done").next().expect("a done line");
    let channel_id: alloy::primitives::B256 = done["channelId"].as_str().unwrap().parse().unwrap();
    let state = store.load(&ChannelId::new(format!("{channel_id:#x}"))).await.unwrap().unwrap();
    let delivered = state.spent.get();
    assert_eq!(delivered, PRICE_3 * tokens as u128);
    let on_chain = channel_on_chain(&anvil, channel_id).await;
    assert!(on_chain._0, "closed on chain");
    let captured = on_chain._7;
    assert_eq!(balance(&anvil, payee).await - payee_before, captured);
    eprintln!(
        "scenario 3 figures: delivered {delivered}, captured {captured}, lost {} ({:.1}%), accepted {}, \
         {vouchers} voucher POSTs for {tokens} tokens ({:.1} per 1,000 tokens)",
        delivered.saturating_sub(captured),
        100.0 * delivered.saturating_sub(captured) as f64 / delivered as f64,
        state.accepted.get(),
        1000.0 * vouchers as f64 / tokens as f64,
    );
    assert!(captured <= delivered, "never captures more than was delivered");
    let bound = PRICE_3 * (WINDOW + 1);
    assert!(delivered - captured <= bound, "lost {} > one window and a frame ({bound})", delivered - captured);
}
