//! Sign-in with x for prepaid balances, with the real client helpers of
//! `@x402/extensions` 2.27.0 (tests/js/prepaid_siwx_client.mjs): a signed challenge buys
//! a session token that spends the signer's balance and no one else's; a forged proof, one
//! for another domain or chain, a replayed one and an expired one are each refused with a
//! fresh challenge; a bare address header is never a credential.

#![cfg(feature = "prepaid")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, address};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate::method::prepaid::{Prepaid, PrepaidApi, Siwx};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::wire::x402::PAYMENT_REQUIRED;
use tollgate::{Amount, PaymentLayer, Price, Quote, Secret};
use tower::ServiceExt;

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
const PRICE: u128 = 40;
/// Anvil's first two dev keys: well known, never funded anywhere real.
const KEY_A: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS_A: Address = address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const ADDRESS_B: Address = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");

/// The prepaid endpoints and a paid route on 127.0.0.1, stopped when dropped.
struct Server {
    app: Router,
    base: String,
    store: MemoryStore,
    called: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(challenge_ttl: Duration) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let base = format!("http://{host}");
        let siwx = Siwx::new(&Secret::new(SECRET), host, format!("{base}/v1/sign-in"), [8453]).ttl(challenge_ttl);
        let prepaid = Prepaid::new(siwx);
        let store = MemoryStore::new();
        let called = Arc::new(AtomicUsize::new(0));
        let counter = called.clone();
        let inner = post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "paid content" }
        });
        let quote = Quote::new(Price::per_request(Amount::new(PRICE))).max_output(1);
        let layer = PaymentLayer::new(prepaid.clone(), store.clone(), "api.test", Secret::new(SECRET)).pricing(quote);
        let api = PrepaidApi::new(prepaid, store.clone());
        let app = Router::new()
            .route("/v1/chat/completions", inner.route_layer(layer))
            .route_service("/v1/sign-in", api.clone())
            .route_service("/v1/balance", api.clone())
            .route_service("/v1/usage", api);
        let served = app.clone();
        let task = tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        Server { app, base, store, called, task }
    }

    /// Runs the JS client with `key`; its report.
    async fn sign_in_with_js(&self, key: &str) -> Value {
        let script = format!("{}/tests/js/prepaid_siwx_client.mjs", env!("CARGO_MANIFEST_DIR"));
        let mut command = tokio::process::Command::new("node");
        command.arg(script).kill_on_drop(true);
        command.env("BASE", &self.base).env("KEY", key).env("OTHER", format!("{ADDRESS_B:#x}"));
        let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout.lines().find_map(|line| serde_json::from_str(line).ok()).expect("a report line")
    }

    /// Sends `request` in process: status, headers and JSON body (or `Null`).
    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (head, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (head.status, head.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn present(&self, proof: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
        let request = Request::post("/v1/sign-in").header("sign-in-with-x", proof).body(Body::empty()).unwrap();
        self.send(request).await
    }

    async fn chat(&self, header: (&str, &str)) -> (StatusCode, axum::http::HeaderMap, Value) {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header(header.0, header.1)
            .body(Body::from(r#"{"model":"m","messages":[]}"#))
            .unwrap();
        self.send(request).await
    }

    async fn spent(&self, payer: Address) -> Option<Amount> {
        self.store.load(&Prepaid::account(payer)).await.unwrap().map(|state| state.spent)
    }
}

/// A 402 that carries a fresh SIWX challenge, as the client helpers read it.
#[track_caller]
fn fresh_challenge(answer: &(StatusCode, axum::http::HeaderMap, Value)) -> &str {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::PAYMENT_REQUIRED, "{body}");
    let required = STANDARD.decode(headers[PAYMENT_REQUIRED].as_bytes()).unwrap();
    let required: Value = serde_json::from_slice(&required).unwrap();
    assert!(required["extensions"]["sign-in-with-x"]["info"]["nonce"].is_string(), "{required}");
    assert!(body.get("token").is_none());
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_client_signs_in_and_bad_proofs_are_refused_with_a_fresh_challenge() {
    let server = Server::start(Duration::from_secs(300)).await;
    let report = server.sign_in_with_js(KEY_A).await;
    assert_eq!(report["signInStatus"], 200, "{report}");
    assert_eq!(report["session"]["address"], format!("{ADDRESS_A:#x}"));
    assert!(report["session"]["token"].as_str().unwrap().starts_with("tgs1."));
    // Its token reads its (empty) balance.
    assert_eq!(report["balanceStatus"], 200, "{report}");
    assert_eq!(report["balance"]["available"], "0");

    let replayed = server.present(report["good"].as_str().unwrap()).await;
    assert!(fresh_challenge(&replayed).contains("used already"), "{replayed:?}");
    let forged = server.present(report["forged"].as_str().unwrap()).await;
    assert!(fresh_challenge(&forged).contains("signature"), "{forged:?}");
    let other_domain = server.present(report["otherDomain"].as_str().unwrap()).await;
    assert!(fresh_challenge(&other_domain).contains("domain"), "{other_domain:?}");
    let other_chain = server.present(report["otherChain"].as_str().unwrap()).await;
    assert!(fresh_challenge(&other_chain).contains("chain"), "{other_chain:?}");
    let garbage = server.present("not base64 at all!").await;
    assert!(fresh_challenge(&garbage).contains("base64"), "{garbage:?}");
    // The unused good proof still signs in once: the refusals spent nothing.
    let spare = server.present(report["spare"].as_str().unwrap()).await;
    assert_eq!(spare.0, StatusCode::OK, "{spare:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let server = Server::start(Duration::from_secs(1)).await;
    let report = server.sign_in_with_js(KEY_A).await;
    // Well past the one-second window the challenge was issued with.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let late = server.present(report["spare"].as_str().unwrap()).await;
    assert!(fresh_challenge(&late).contains("expired"), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_spends_its_signers_balance_only_and_a_bare_address_never_spends() {
    let server = Server::start(Duration::from_secs(300)).await;
    server.store.credit(&Prepaid::account(ADDRESS_B), Amount::new(1_000), "deposit:b").await.unwrap();
    let report = server.sign_in_with_js(KEY_A).await;
    let bearer = format!("Bearer {}", report["session"]["token"].as_str().unwrap());

    // A has no balance: refused with the prepaid challenge, B's untouched.
    let (status, headers, body) = server.chat(("authorization", &bearer)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains(r#"method="prepaid""#), "{challenge}");
    // paymodel's `X-Payer` naming B, with or without A's token: never B's money.
    for headers in [("x-payer", format!("{ADDRESS_B:#x}")), ("authorization", "Bearer x402".to_owned())] {
        let (status, _, _) = server.chat((headers.0, &headers.1)).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    }
    let forged = format!("{bearer}x");
    assert_eq!(server.chat(("authorization", &forged)).await.0, StatusCode::PAYMENT_REQUIRED);
    // The balance endpoints want the token too: no address header stands in for it.
    for header in [("x-payer", format!("{ADDRESS_B:#x}")), ("authorization", forged.clone())] {
        let request = Request::get("/v1/balance").header(header.0, &header.1).body(Body::empty()).unwrap();
        let (status, headers, _) = server.send(request).await;
        assert_eq!((status, &headers["www-authenticate"]), (StatusCode::UNAUTHORIZED, &"Bearer".parse().unwrap()));
    }
    assert_eq!(server.called.load(Ordering::SeqCst), 0, "nothing was served");
    assert_eq!(server.spent(ADDRESS_B).await, Some(Amount::ZERO));

    // Once A has a balance, A's token spends it: exactly the price, recorded.
    server.store.credit(&Prepaid::account(ADDRESS_A), Amount::new(100), "deposit:a").await.unwrap();
    let (status, _, body) = server.chat(("authorization", &bearer)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.called.load(Ordering::SeqCst), 1);
    assert_eq!(server.spent(ADDRESS_A).await, Some(Amount::new(PRICE)));
    assert_eq!(server.spent(ADDRESS_B).await, Some(Amount::ZERO));
    let usage = Request::get("/v1/usage").header("authorization", &bearer).body(Body::empty()).unwrap();
    let (status, _, usage) = server.send(usage).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["usage"].as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage["usage"][0]["cost"], PRICE.to_string());
    assert_eq!(usage["usage"][0]["path"], "/v1/chat/completions");
}
