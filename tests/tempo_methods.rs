//! One route, two Tempo methods (issue 9): `PaymentLayer` offers a v1 session AND a
//! whole-request charge in one 402; the real mppx clients, as their docs show them, each
//! pay it with their own method (the session client opens a channel and sends vouchers, the
//! charge client signs one transfer), and the handler reads which from its
//! [`PaymentContext`].

#![cfg(feature = "tempo")]

mod chain;
mod tempo_support;

use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use serde_json::Value;
use tempo_support::onchain::{ESCROW, balance, install_escrow};
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{ChargeConfig, PATH_USD, RpcChain, SessionConfig, TempoCharge, TempoSession};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, PaymentContext, PaymentError, PaymentLayer, Price, Quote, Rate, Secret};

const CHAIN_ID: u64 = 4242;
const SECRET: &str = "tempo-methods-secret-of-at-least-32-bytes";
const PRICE: u128 = 1_000;
const TOKENS: usize = 12;

fn key_hex(anvil: &AnvilInstance, n: usize) -> String {
    format!("0x{}", alloy::hex::encode(anvil.nth_key(n).unwrap().to_bytes()))
}

/// `/v1/stream` behind a layer offering session and charge; the handler streams `TOKENS`
/// events and names the payment it read from its context in `x-paid`.
async fn serve(anvil: &AnvilInstance, store: MemoryStore) -> tempo_support::Server {
    let payee = chain::dev_signer(anvil, 1);
    let recipient = payee.address();
    let rpc = RpcChain::new(&anvil.endpoint(), payee.clone()).unwrap();
    let session = TempoSession::new(
        SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, recipient).suggested_deposit(Amount::new(100_000)),
        rpc.clone(),
    );
    let charge = TempoCharge::new(ChargeConfig::new(CHAIN_ID, PATH_USD, recipient), rpc).unwrap().whole_request();
    let price = Price::per_unit("token", Rate::per_unit(Amount::new(PRICE)));
    let pricing = move |_: &http::request::Parts| -> Result<Option<Quote>, PaymentError> {
        Ok(Some(Quote::new(price.clone()).max_output(TOKENS as u64)))
    };
    let layer = PaymentLayer::new((session, charge), store, "127.0.0.1", Secret::new(SECRET))
        .pricing(pricing)
        .meter(EventMeter::default())
        .voucher_window(4);
    let stream = |request: Request| async move {
        let paid = request.extensions().get::<PaymentContext>().cloned();
        let mut response = tempo_support::token_stream(TOKENS, Duration::from_millis(1));
        let paid = paid.map(|c| format!("{}/{} {}", c.method, c.intent, c.payer.unwrap_or_default()));
        response.headers_mut().insert("x-paid", paid.unwrap_or_else(|| "unpaid".into()).parse().unwrap());
        response
    };
    let app = Router::new().route("/v1/stream", get(stream).post(stream)).route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tempo_support::Server::new(addr, task)
}

async fn node(script: &str, env: &[(&str, String)]) -> Vec<Value> {
    let mut command = tokio::process::Command::new("node");
    command.arg(format!("{}/tests/js/{script}", env!("CARGO_MANIFEST_DIR"))).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output =
        tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_session_and_charge_clients_each_pay_one_route_with_their_own_method() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    install_escrow(&anvil).await;
    let store = MemoryStore::new();
    let server = serve(&anvil, store.clone()).await;
    let url = server.url("/v1/stream");

    // One 402, both methods: the session's per-token offer and the charge of the whole request.
    let unpaid = reqwest_like_get(&url).await;
    let offered = Challenge::parse_all(unpaid.get_all(http::header::WWW_AUTHENTICATE)).unwrap();
    let pairs: Vec<_> = offered.iter().map(|c| format!("{}/{}", c.method, c.intent)).collect();
    assert_eq!(pairs, ["tempo/session", "tempo/charge"]);
    assert_eq!(offered[0].decode_request().unwrap()["amount"], PRICE.to_string());
    assert_eq!(offered[1].decode_request().unwrap()["amount"], (PRICE * TOKENS as u128).to_string());

    let base = |key: usize| {
        vec![
            ("URL", url.clone()),
            ("RPC_URL", anvil.endpoint()),
            ("PRIVATE_KEY", key_hex(&anvil, key)),
            ("CHAIN_ID", CHAIN_ID.to_string()),
        ]
    };

    // The charge client: one transfer of the whole request's maximum, the whole stream.
    let payee = chain::dev_signer(&anvil, 1).address();
    let before = balance(&anvil, payee).await;
    let lines = node("mppx_charge_client.mjs", &base(4)).await;
    let response = lines.iter().find(|l| l["kind"] == "response").expect("a response line");
    assert_eq!(response["status"], 200);
    let body = response["body"].as_str().unwrap();
    let receipt =
        body.split("event: payment-receipt\ndata: ").nth(1).and_then(|r| r.lines().next()).expect("a receipt event");
    let receipt: Value = serde_json::from_str(receipt).unwrap();
    assert_eq!((receipt["method"].as_str(), receipt["intent"].as_str()), (Some("tempo"), Some("charge")), "{receipt}");
    let paid = response["paid"].as_str().unwrap();
    assert!(paid.starts_with("tempo/charge "), "the handler saw a charge: {paid}");
    let tokens = body.matches("data: tok").count();
    assert_eq!(tokens, TOKENS, "a whole-request charge is never cut short");
    assert_eq!(balance(&anvil, payee).await - before, PRICE * TOKENS as u128, "settled at once, on chain");
    let reference = receipt["reference"].as_str().unwrap().to_owned();
    let charged = store.load(&ChannelId::new(format!("charge:{reference}"))).await.unwrap().expect("charge slot");
    assert_eq!(charged.spent, Amount::new(PRICE * TOKENS as u128));

    // The session client: opens a channel, pays by vouchers as the stream goes, closes.
    let mut env = base(2);
    env.extend([("ESCROW", ESCROW.to_checksum(None)), ("MAX_DEPOSIT", "1".into()), ("TOPUP_AMOUNT_RAW", "0".into())]);
    let lines = node("mppx_session_client.mjs", &env).await;
    let messages = lines.iter().filter(|l| l["kind"] == "event" && l["event"] == "message").count();
    assert_eq!(messages, TOKENS + 1, "every token and [DONE]");
    assert!(lines.iter().any(|l| l["kind"] == "event" && l["event"] == "payment-need-voucher"), "paid by vouchers");
    let done = lines.iter().find(|l| l["kind"] == "done").expect("a done line");
    let channel: alloy::primitives::B256 = done["channelId"].as_str().unwrap().parse().unwrap();
    let state = store.load(&ChannelId::new(format!("{channel:#x}"))).await.unwrap().expect("session channel");
    assert_eq!(state.spent, Amount::new(PRICE * TOKENS as u128));
    assert!(state.finalized, "closed through the session method");
}

/// The unpaid request's headers.
async fn reqwest_like_get(url: &str) -> http::HeaderMap {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::PAYMENT_REQUIRED);
    response.headers().clone()
}
