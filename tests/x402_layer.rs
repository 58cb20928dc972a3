//! x402 `exact` through the PaymentLayer on anvil (chain id 8453, our EIP-3009 / EIP-2612
//! token), paid by the REAL clients as their READMEs show them: `@x402/fetch` with
//! `@x402/evm` (v2, `PAYMENT-SIGNATURE`), and `@libertai/x402` 0.1.0 under the `openai` SDK
//! (`X-PAYMENT`), EIP-3009 and Permit. The payee gains the price (EIP-3009) or exactly the
//! metered amount (Permit), once. Bad payments get their status, never reach the inner
//! service and settle nothing; an upstream 500 settles nothing.

#![cfg(feature = "x402")]

mod chain;
mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tollgate::meter::ByteMeter;
use tollgate::method::x402::{EvmOffer, ExactPayload, OnChainSettler, SettlementOutcome, X402Exact};
use tollgate::store::MemoryStore;
use tollgate::wire::x402::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;
use x402_support::{World, key_hex};

const PRICE: u128 = 1_000;
const SECRET: &str = "test-secret-of-at-least-32-bytes!";

/// The chat completion the inner service answers (what the Permit route meters, per byte).
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// A paid `/v1/chat/completions` on 127.0.0.1, stopped when dropped.
struct Paid {
    app: Router,
    url: String,
    called: Arc<AtomicUsize>,
    settled: mpsc::UnboundedReceiver<SettlementOutcome>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Paid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Paid {
    /// The route behind x402 `offer` (its amount replaced by the quote's maximum, [`PRICE`]),
    /// the inner service answering `status`. EIP-3009 is priced per request; a Permit per
    /// byte of the answer, up to [`PRICE`].
    async fn start(world: &World, offer: EvmOffer, status: StatusCode) -> Paid {
        let store = MemoryStore::new();
        let (tx, settled) = mpsc::unbounded_channel();
        let settler = OnChainSettler::new(world.chain(), store.clone());
        let method = X402Exact::new(offer.clone(), world.chain(), settler).on_settlement(move |outcome| {
            let _ = tx.send(outcome);
        });
        let called = Arc::new(AtomicUsize::new(0));
        let counter = called.clone();
        let inner = post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(COMPLETION))
                    .unwrap()
            }
        });
        let layer = PaymentLayer::new(method, store, "api.test", Secret::new(SECRET));
        let app = match offer.method() {
            tollgate::method::x402::TransferMethod::Permit => {
                let quote =
                    Quote::new(Price::per_unit("byte", Rate::per_unit(Amount::new(1)))).max_output(PRICE as u64);
                Router::new()
                    .route("/v1/chat/completions", inner)
                    .route_layer(layer.pricing(quote).meter(ByteMeter::new()))
            }
            _ => {
                let quote = Quote::new(Price::per_request(Amount::new(PRICE))).max_output(1);
                Router::new().route("/v1/chat/completions", inner).route_layer(layer.pricing(quote))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
        let served = app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, served).await.unwrap();
        });
        Paid { app, url, called, settled, task }
    }

    fn called(&self) -> usize {
        self.called.load(Ordering::SeqCst)
    }

    /// The next settlement outcome (the hook runs after the body is done).
    async fn next_settlement(&mut self) -> SettlementOutcome {
        tokio::time::timeout(Duration::from_secs(60), self.settled.recv())
            .await
            .expect("the settlement hook ran")
            .expect("the method is alive")
    }

    /// No settlement was started or skipped (no grant was ever made).
    fn no_settlement(&mut self) {
        assert!(self.settled.try_recv().is_err(), "a refused payment reached settlement");
    }

    /// POSTs the chat request with `headers`, in process.
    async fn post(&self, headers: &[(&axum::http::HeaderName, &str)]) -> Response {
        let mut request =
            Request::post("/v1/chat/completions").header("host", "api.test").header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = r#"{"model":"test-model","messages":[{"role":"user","content":"Hello!"}]}"#;
        // Read to the end: the settlement hook runs once the body is done.
        let response = self.app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let (head, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Response::from_parts(head, Body::from(bytes))
    }

    /// The v2 requirement the route offers now.
    async fn requirement(&self) -> Value {
        let response = self.post(&[]).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let required = STANDARD.decode(response.headers()[PAYMENT_REQUIRED].as_bytes()).unwrap();
        serde_json::from_slice::<Value>(&required).unwrap()["accepts"][0].clone()
    }
}

/// Runs tests/js/x402_pay.mjs: `client` pays `url` with `key`.
async fn js_pay(client: &str, url: &str, world: &World, key: &alloy::signers::local::PrivateKeySigner) -> Value {
    let out = tokio::process::Command::new("node")
        .arg("tests/js/x402_pay.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CLIENT", client)
        .env("URL", url)
        .env("PRIVATE_KEY", key_hex(key))
        .env("RPC_URL", world.rpc_url())
        .env("ASSET", world.token.to_checksum(None))
        .output()
        .await
        .expect("node runs");
    assert!(out.status.success(), "x402_pay.mjs {client} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn v2_header(requirement: &Value, payload: &ExactPayload) -> String {
    let payment = json!({
        "x402Version": 2,
        "resource": {"url": "http://api.test/v1/chat/completions"},
        "accepted": requirement,
        "payload": payload,
    });
    STANDARD.encode(payment.to_string())
}

async fn balances(world: &World) -> (u128, u128) {
    (world.balance(world.payee.address()).await, world.balance(world.payer.address()).await)
}

#[tokio::test]
async fn x402_fetch_pays_the_price_once_through_the_layer() {
    let world = World::new().await;
    let mut paid = Paid::start(&world, world.offer(0), StatusCode::OK).await;
    let before = balances(&world).await;
    let out = js_pay("x402-fetch", &paid.url, &world, &world.payer).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(serde_json::from_str::<Value>(out["body"].as_str().unwrap()).unwrap()["id"], "chatcmpl-1");
    assert_eq!(paid.called(), 1);
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("settled on chain");
    assert_eq!(settlement.amount, Amount::new(PRICE));
    assert_eq!(settlement.payer, world.payer.address());
    assert!(settlement.transaction.is_some(), "one transferWithAuthorization");
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
}

#[tokio::test]
async fn libertai_under_the_openai_sdk_pays_the_maximum_with_eip3009() {
    let world = World::new().await;
    let mut paid = Paid::start(&world, world.offer(0), StatusCode::OK).await;
    let before = balances(&world).await;
    let out = js_pay("libertai-openai", &paid.url, &world, &world.payer).await;
    assert_eq!(out["status"], 200, "{out}");
    let completion: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hi!");
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("settled on chain");
    assert_eq!(settlement.amount, Amount::new(PRICE));
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
}

#[tokio::test]
async fn libertai_with_a_permit_pays_exactly_the_metered_amount() {
    let world = World::new().await;
    let mut paid = Paid::start(&world, world.permit_offer(0), StatusCode::OK).await;
    let before = balances(&world).await;
    let out = js_pay("libertai-openai", &paid.url, &world, &world.payer).await;
    assert_eq!(out["status"], 200, "{out}");
    let metered = COMPLETION.len() as u128;
    assert!(metered < PRICE, "the answer costs less than the signed maximum");
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("settled on chain");
    assert_eq!(settlement.amount, Amount::new(metered));
    assert_eq!(balances(&world).await, (before.0 + metered, before.1 - metered));
    assert_eq!(world.permit_nonce(world.payer.address()).await, U256::from(1), "the permit was used");
}

#[tokio::test]
async fn an_upstream_500_settles_nothing_for_eip3009_or_permit() {
    let world = World::new().await;
    let mut paid = Paid::start(&world, world.offer(0), StatusCode::INTERNAL_SERVER_ERROR).await;
    let before = balances(&world).await;
    let out = js_pay("x402-fetch", &paid.url, &world, &world.payer).await;
    assert_eq!(out["status"], 500, "{out}");
    assert_eq!(paid.called(), 1);
    assert!(paid.next_settlement().await.is_none(), "nothing delivered, nothing settled");
    assert_eq!(balances(&world).await, before);
    // A Permit answered 500: settled 0, so no transaction, and the permit stays unused.
    let mut permit = Paid::start(&world, world.permit_offer(0), StatusCode::INTERNAL_SERVER_ERROR).await;
    let sent = world.sent(world.payee.address()).await;
    let out = js_pay("libertai-openai", &permit.url, &world, &world.payer).await;
    assert_eq!(out["status"], 500, "{out}");
    assert_eq!(permit.called(), 1);
    assert!(permit.next_settlement().await.is_none());
    assert_eq!(balances(&world).await, before);
    assert_eq!(world.permit_nonce(world.payer.address()).await, U256::ZERO);
    assert_eq!(world.sent(world.payee.address()).await, sent, "no transaction");
}

#[tokio::test]
async fn bad_payments_are_refused_before_the_inner_service_and_settle_nothing() {
    let world = World::new().await;
    let mut paid = Paid::start(&world, world.offer(0), StatusCode::OK).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payer = world.payer.address();
    let someone: Address = world.poor.address();

    let forged = world.sign_transfer(&world.poor, world.authorization(payer, PRICE));
    let mut elsewhere = world.authorization(payer, PRICE);
    elsewhere.to = someone;
    let wrong_pay_to = world.sign_transfer(&world.payer, elsewhere);
    let lower = world.sign_transfer(&world.payer, world.authorization(payer, PRICE - 1));
    for (case, payload) in [("forged", forged), ("wrong payTo", wrong_pay_to), ("lower value", lower)] {
        let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payload))]).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "{case}");
        assert!(response.headers().contains_key(PAYMENT_REQUIRED), "{case}: fresh offers");
    }
    let malformed = paid.post(&[(&PAYMENT_SIGNATURE, "not base64 at all!")]).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(paid.called(), 0);
    paid.no_settlement();

    // A good payment, then the same again: served once, settled once.
    let good = v2_header(&requirement, &world.sign_transfer(&world.payer, world.authorization(payer, PRICE)));
    assert_eq!(paid.post(&[(&PAYMENT_SIGNATURE, &good)]).await.status(), StatusCode::OK);
    assert_eq!(paid.next_settlement().await.expect("settled").unwrap().amount, Amount::new(PRICE));
    let replay = paid.post(&[(&PAYMENT_SIGNATURE, &good)]).await;
    assert_eq!(replay.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(paid.called(), 1);
    paid.no_settlement();
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
}
