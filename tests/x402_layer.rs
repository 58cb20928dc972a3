//! x402 `exact` through the PaymentLayer on anvil (chain id 8453, our EIP-3009 / EIP-2612
//! token), paid by the REAL clients as their READMEs show them: `@x402/fetch` with
//! `@x402/evm` (v2, `PAYMENT-SIGNATURE`), and `@libertai/x402` 0.1.0 under the `openai` SDK
//! (`X-PAYMENT`), EIP-3009 and Permit. The payee gains the price (EIP-3009) or exactly the
//! metered amount (Permit), once. Bad payments get their status, never reach the inner
//! service and settle nothing; an upstream 500 settles nothing.
//!
//! Receipts: a plain answer carries `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE` (the mined
//! transaction checked on anvil); an SSE stream ends with a `payment-receipt` event (EIP-3009
//! streams settle before their first content). The attack review's cases: a payer emptying
//! its account or burning its permit nonce meanwhile, a lying facilitator, a replay on a
//! second instance, a client gone mid-stream or mid-settlement.

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
use tollgate::method::x402::{
    EvmOffer, ExactPayload, Facilitator, OnChainSettler, Settle, SettlementOutcome, X402Exact,
};
use tollgate::store::{ChannelStore, MemoryStore, RedisStore};
use tollgate::wire::x402::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;
use x402_support::{World, key_hex};

const PRICE: u128 = 1_000;
const SECRET: &str = "test-secret-of-at-least-32-bytes!";

/// The chat completion the inner service answers (what the Permit route meters, per byte).
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// What the inner service does before it answers (a payer acting behind the layer's back).
type BeforeAnswer = Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

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

/// How a test route answers and is paid.
struct Route {
    /// The inner service's status, content type and body.
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
    before: Option<BeforeAnswer>,
    /// The price (EIP-3009: per request) or the maximum (Permit: per byte, up to it).
    price: u128,
    /// Send the body's first event, then the rest only once this fires (or never).
    hold: Option<Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            status: StatusCode::OK,
            content_type: "application/json",
            body: COMPLETION,
            before: None,
            price: PRICE,
            hold: None,
        }
    }
}

impl Paid {
    /// The route behind x402 `offer` (its amount replaced by the quote's maximum, [`PRICE`]),
    /// the inner service answering `status`. EIP-3009 is priced per request; a Permit per
    /// byte of the answer, up to [`PRICE`]. Settled on chain by the payee, in a store of its own.
    async fn start(world: &World, offer: EvmOffer, status: StatusCode) -> Paid {
        Paid::start_with(world, offer, Route { status, ..Route::default() }).await
    }

    /// As [`start`](Paid::start), answering as `route` says.
    async fn start_with(world: &World, offer: EvmOffer, route: Route) -> Paid {
        let store = MemoryStore::new();
        let settler = OnChainSettler::new(world.chain(), store.clone());
        Paid::start_on(world, offer, store, settler, route).await
    }

    /// As [`start_with`](Paid::start_with), on `store`, settled by `settler`.
    async fn start_on<St, Se>(world: &World, offer: EvmOffer, store: St, settler: Se, route: Route) -> Paid
    where
        St: ChannelStore + Clone,
        Se: Settle,
    {
        let (tx, settled) = mpsc::unbounded_channel();
        let method = X402Exact::new(offer.clone(), world.chain(), settler).on_settlement(move |outcome| {
            let _ = tx.send(outcome);
        });
        let called = Arc::new(AtomicUsize::new(0));
        let counter = called.clone();
        let Route { status, content_type, body, before, price, hold } = route;
        let inner = post(move || {
            let (counter, before) = (counter.clone(), before.clone());
            let hold = hold.as_ref().map(|hold| hold.lock().unwrap().take());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(before) = before {
                    before().await;
                }
                if let Some(wait) = hold {
                    let (first, rest) = body.split_at(body.find("\n\n").unwrap() + 2);
                    let (tx, rx) = mpsc::unbounded_channel();
                    tx.send(axum::body::Bytes::from_static(first.as_bytes())).unwrap();
                    tokio::spawn(async move {
                        if let Some(wait) = wait {
                            let _ = wait.await;
                        }
                        let _ = tx.send(axum::body::Bytes::from_static(rest.as_bytes()));
                    });
                    let chunks = Body::new(Chunks(rx));
                    return Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(chunks)
                        .unwrap();
                }
                Response::builder().status(status).header("content-type", content_type).body(Body::from(body)).unwrap()
            }
        });
        let layer = PaymentLayer::new(method, store, "api.test", Secret::new(SECRET));
        let app = match offer.method() {
            tollgate::method::x402::TransferMethod::Permit => {
                let quote =
                    Quote::new(Price::per_unit("byte", Rate::per_unit(Amount::new(1)))).max_output(price as u64);
                Router::new()
                    .route("/v1/chat/completions", inner)
                    .route_layer(layer.pricing(quote).meter(ByteMeter::new()))
            }
            _ => {
                let quote = Quote::new(Price::per_request(Amount::new(price))).max_output(1);
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

/// A base64 JSON `SettleResponse` header value, decoded.
fn settle_response(header: &str) -> Value {
    serde_json::from_slice(&STANDARD.decode(header).expect("base64")).expect("JSON")
}

/// The receipt of `tx`, which is mined, succeeded and called the token.
async fn mined(world: &World, tx: &str) -> alloy::rpc::types::TransactionReceipt {
    use alloy::providers::{Provider, ProviderBuilder};
    let provider = ProviderBuilder::new().connect_http(world.anvil.endpoint_url());
    let hash: alloy::primitives::B256 = tx.parse().expect("a transaction hash");
    let receipt = provider.get_transaction_receipt(hash).await.unwrap().expect("the receipt's transaction is mined");
    assert!(receipt.status(), "it succeeded");
    assert_eq!(receipt.to, Some(world.token));
    receipt
}

/// Checks that `tx` is mined, succeeded, was sent by the payee (the settler) to the token.
async fn assert_settled_on_chain(world: &World, tx: &str) {
    assert_eq!(mined(world, tx).await.from, world.payee.address());
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
    // The receipt came with the answer: PAYMENT-RESPONSE names that transaction.
    let receipt = settle_response(out["paymentResponse"].as_str().expect("a PAYMENT-RESPONSE header"));
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["network"], "eip155:8453");
    assert_eq!(receipt["payer"], world.payer.address().to_checksum(None));
    assert_eq!(receipt["amount"], PRICE.to_string());
    assert_eq!(receipt["transaction"], settlement.transaction.unwrap().to_string());
    assert_settled_on_chain(&world, receipt["transaction"].as_str().unwrap()).await;
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
    // It paid with X-PAYMENT: the receipt comes back in X-PAYMENT-RESPONSE.
    let receipt = settle_response(out["paymentResponse"].as_str().expect("an X-PAYMENT-RESPONSE header"));
    assert_eq!((&receipt["success"], &receipt["amount"]), (&json!(true), &json!(PRICE.to_string())));
    assert_settled_on_chain(&world, receipt["transaction"].as_str().unwrap()).await;
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
    let receipt = settle_response(out["paymentResponse"].as_str().expect("an X-PAYMENT-RESPONSE header"));
    assert_eq!((&receipt["success"], &receipt["amount"]), (&json!(true), &json!(metered.to_string())));
    assert_settled_on_chain(&world, receipt["transaction"].as_str().unwrap()).await;
}

/// An SSE answer of four events, 348 bytes in all: less than the signed maximum.
const STREAM: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

/// The data of the last event of an SSE body, if it is named `name`.
fn last_event(body: &str, name: &str) -> Option<Value> {
    let last = body.trim_end().rsplit("\n\n").next()?;
    let data = last.strip_prefix(&format!("event: {name}\ndata: "))?;
    serde_json::from_str(data).ok()
}

#[tokio::test]
async fn an_sse_stream_paid_with_a_permit_ends_with_its_settlement_as_a_receipt_event() {
    let world = World::new().await;
    let mut paid = Paid::start_with(
        &world,
        world.permit_offer(0),
        Route { content_type: "text/event-stream", body: STREAM, ..Route::default() },
    )
    .await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let permit = x402_support::sign_permit(&world, &world.payer, PRICE, U256::ZERO, x402_support::unix_now() + 300);
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &permit))]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.starts_with(STREAM), "the stream went out whole, then the receipt: {body}");
    let receipt = last_event(&body, "payment-receipt").expect("a final payment-receipt event");
    let gain = world.balance(world.payee.address()).await - before.0;
    assert!(gain > 0 && gain < PRICE, "settled the metered amount, not the maximum: {gain}");
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["amount"], gain.to_string(), "the receipt's amount is the payee's gain");
    assert_eq!(receipt["extensions"]["status"], "settled");
    assert_settled_on_chain(&world, receipt["transaction"].as_str().unwrap()).await;
    assert_eq!(paid.next_settlement().await.expect("settled").unwrap().amount, Amount::new(gain));
    paid.no_settlement();
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

/// Before the inner service answers, the payer moves all its tokens away (as a payer racing
/// itself on another instance would): its authorization can no longer settle.
fn payer_empties_its_account(world: &World) -> BeforeAnswer {
    use alloy::providers::ProviderBuilder;
    let (url, token, payer, poor) =
        (world.anvil.endpoint_url(), world.token, world.payer.clone(), world.poor.address());
    Arc::new(move || {
        let (url, payer) = (url.clone(), payer.clone());
        Box::pin(async move {
            let provider = ProviderBuilder::new().wallet(payer).connect_http(url);
            let token = x402_support::AuthorizedToken::new(token, provider);
            let funds = U256::from(x402_support::FUNDS);
            token.transfer(poor, funds).send().await.unwrap().get_receipt().await.unwrap();
        })
    })
}

#[tokio::test]
async fn a_plain_answer_whose_payment_fails_to_settle_is_a_402_and_delivers_nothing() {
    let world = World::new().await;
    let route = Route { before: Some(payer_empties_its_account(&world)), ..Route::default() };
    let mut paid = Paid::start_with(&world, world.offer(0), route).await;
    let requirement = paid.requirement().await;
    let payee = world.balance(world.payee.address()).await;
    let payment = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payment))]).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let receipt = settle_response(response.headers()[PAYMENT_RESPONSE].to_str().unwrap());
    assert_eq!(receipt["success"], false, "{receipt}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("chatcmpl"), "the answer was not delivered");
    assert_eq!(paid.called(), 1);
    assert!(paid.next_settlement().await.expect("it tried").is_err(), "the settlement failed");
    assert_eq!(world.balance(world.payee.address()).await, payee, "nothing moved to the payee");
}

#[tokio::test]
async fn the_official_facilitator_settles_for_x402_exact_in_the_layer() {
    let world = World::new().await;
    let gas_payer = chain::dev_signer(&world.anvil, 4);
    let process = x402_support::FacilitatorProcess::start(&world, &gas_payer).await;
    let store = MemoryStore::new();
    let facilitator = Facilitator::new(process.url.clone(), world.chain(), store.clone()).unwrap();
    let mut paid = Paid::start_on(&world, world.offer(0), store, facilitator, Route::default()).await;
    let before = balances(&world).await;
    let out = js_pay("x402-fetch", &paid.url, &world, &world.payer).await;
    assert_eq!(out["status"], 200, "{out}");
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("the facilitator settled");
    assert_eq!(settlement.amount, Amount::new(PRICE));
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
    let receipt = settle_response(out["paymentResponse"].as_str().expect("a PAYMENT-RESPONSE header"));
    assert_eq!(receipt["success"], true);
    let tx = receipt["transaction"].as_str().unwrap();
    assert_eq!(mined(&world, tx).await.from, gas_payer.address(), "the facilitator sent it, not the payee");
}

#[tokio::test]
async fn expired_early_oversize_and_cheap_route_payments_never_reach_the_dear_route() {
    let world = World::new().await;
    let mut dear = Paid::start_with(&world, world.offer(0), Route { price: 2 * PRICE, ..Route::default() }).await;
    let mut cheap = Paid::start(&world, world.offer(0), StatusCode::OK).await;
    let (dear_offer, cheap_offer) = (dear.requirement().await, cheap.requirement().await);
    let before = balances(&world).await;
    let payer = world.payer.address();
    let now = x402_support::unix_now();

    let mut expired = world.authorization(payer, 2 * PRICE);
    expired.valid_before = now - 1;
    let mut early = world.authorization(payer, 2 * PRICE);
    (early.valid_after, early.valid_before) = (now + 600, now + 900);
    for (case, authorization) in [("expired", expired), ("not yet valid", early)] {
        let header = v2_header(&dear_offer, &world.sign_transfer(&world.payer, authorization));
        let response = dear.post(&[(&PAYMENT_SIGNATURE, &header)]).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "{case}");
        assert!(response.headers().contains_key(PAYMENT_REQUIRED), "{case}: a fresh offer");
    }
    // Over 16 KiB, in either header: malformed, not decoded.
    let oversize = "A".repeat(16 * 1024 + 4);
    for header in [&PAYMENT_SIGNATURE, &X_PAYMENT] {
        assert_eq!(dear.post(&[(header, &oversize)]).await.status(), StatusCode::BAD_REQUEST, "{header}");
    }
    // A payment for the cheap route: as v2 (it names the cheap offer) and as v1 (it names
    // none and pays less than the dear offer).
    let cheap_payment = world.sign_transfer(&world.payer, world.authorization(payer, PRICE));
    let v2 = v2_header(&cheap_offer, &cheap_payment);
    let v1 = json!({"x402Version": 1, "scheme": "exact", "network": "base", "payload": cheap_payment}).to_string();
    for (case, header, value) in [("v2", &PAYMENT_SIGNATURE, &v2), ("v1", &X_PAYMENT, &v1)] {
        let response = dear.post(&[(header, value)]).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "{case}");
    }
    assert_eq!(dear.called(), 0, "the dear route's inner service was never called");
    dear.no_settlement();
    assert_eq!(balances(&world).await, before, "nothing settled");
    // The cheap payment still pays the cheap route, once.
    assert_eq!(cheap.post(&[(&PAYMENT_SIGNATURE, &v2)]).await.status(), StatusCode::OK);
    assert_eq!(cheap.next_settlement().await.expect("settled").unwrap().amount, Amount::new(PRICE));
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
}

/// A Redis store on a prefix of its own and a second connection to the same keys (another
/// instance), or `None` without a server outside CI.
async fn shared_redis() -> Option<(RedisStore, RedisStore)> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("tollgate-x402-test-{}-{nanos:x}", std::process::id());
    match (RedisStore::connect(&url).await, RedisStore::connect(&url).await) {
        (Ok(a), Ok(b)) => Some((a.with_prefix(&prefix), b.with_prefix(&prefix))),
        (Err(e), _) | (_, Err(e)) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("no Redis under CI: {e}")
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_payment_replayed_on_a_second_layer_sharing_the_store_is_refused() {
    let Some((one, two)) = shared_redis().await else { return };
    let world = World::new().await;
    let mut first =
        Paid::start_on(&world, world.offer(0), one.clone(), OnChainSettler::new(world.chain(), one), Route::default())
            .await;
    let mut second =
        Paid::start_on(&world, world.offer(0), two.clone(), OnChainSettler::new(world.chain(), two), Route::default())
            .await;
    let requirement = first.requirement().await;
    let before = balances(&world).await;
    let good =
        v2_header(&requirement, &world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE)));
    // The same payment on both instances at once: one serves it.
    let headers = [(&PAYMENT_SIGNATURE, good.as_str())];
    let (a, b) = tokio::join!(first.post(&headers), second.post(&headers));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PAYMENT_REQUIRED]);
    assert_eq!(first.called() + second.called(), 1);
    // And again later, on either: refused before the inner service.
    for paid in [&first, &second] {
        assert_eq!(paid.post(&headers).await.status(), StatusCode::PAYMENT_REQUIRED);
    }
    assert_eq!(first.called() + second.called(), 1);
    let (served, idle) =
        if a.status() == StatusCode::OK { (&mut first, &mut second) } else { (&mut second, &mut first) };
    assert_eq!(served.next_settlement().await.expect("settled").unwrap().amount, Amount::new(PRICE));
    idle.no_settlement();
    served.no_settlement();
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE), "settled once");
}

/// Before the inner service answers, the payer burns its permit nonce 0 with another permit
/// (to someone else, for nothing): the permit it paid with can no longer be used.
fn payer_burns_its_permit_nonce(world: &World) -> BeforeAnswer {
    use alloy::providers::ProviderBuilder;
    use alloy::signers::SignerSync;
    use alloy::sol_types::{SolStruct, eip712_domain};
    let (url, token, payer, poor) =
        (world.anvil.endpoint_url(), world.token, world.payer.clone(), world.poor.address());
    Arc::new(move || {
        let (url, payer) = (url.clone(), payer.clone());
        Box::pin(async move {
            let deadline = U256::from(x402_support::unix_now() + 300);
            let domain = eip712_domain! {
                name: x402_support::NAME.to_owned(), version: x402_support::VERSION.to_owned(),
                chain_id: x402_support::CHAIN_ID, verifying_contract: token,
            };
            let other = x402_support::Permit {
                owner: payer.address(),
                spender: poor,
                value: U256::ZERO,
                nonce: U256::ZERO,
                deadline,
            };
            let signature = payer.sign_hash_sync(&other.eip712_signing_hash(&domain)).unwrap();
            let owner = payer.address();
            let provider = ProviderBuilder::new().wallet(payer).connect_http(url);
            let token = x402_support::AuthorizedToken::new(token, provider);
            let v = 27 + u8::from(signature.v());
            let (r, s) = (signature.r().into(), signature.s().into());
            let sent = token.permit(owner, poor, U256::ZERO, deadline, v, r, s).send().await.unwrap();
            assert!(sent.get_receipt().await.unwrap().status(), "the other permit burnt nonce 0");
        })
    })
}

#[tokio::test]
async fn a_permit_whose_nonce_the_payer_burnt_meanwhile_is_not_taken_for_a_settlement() {
    let world = World::new().await;
    let route = Route { before: Some(payer_burns_its_permit_nonce(&world)), ..Route::default() };
    let mut paid = Paid::start_with(&world, world.permit_offer(0), route).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let permit = x402_support::sign_permit(&world, &world.payer, PRICE, U256::ZERO, x402_support::unix_now() + 300);
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &permit))]).await;
    assert_eq!(paid.called(), 1);
    assert_eq!(world.permit_nonce(world.payer.address()).await, U256::from(1), "the nonce is burnt");
    let outcome = paid.next_settlement().await.expect("it tried to settle");
    assert!(outcome.is_err(), "nothing moved, so nothing settled: {outcome:?}");
    assert_eq!(balances(&world).await, before, "the payee got nothing");
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "and the answer was not delivered");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("chatcmpl"));
}

/// A facilitator that says yes to everything and settles nothing (a test double).
fn as_json(value: Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/json")], value.to_string())
}

async fn lying_facilitator() -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::get;
    let app = Router::new()
        .route(
            "/supported",
            get(|| async {
                as_json(json!({"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}]}))
            }),
        )
        .route("/verify", post(|| async { as_json(json!({"isValid": true})) }))
        .route(
            "/settle",
            post(|| async {
                let tx = format!("0x{}", "ab".repeat(32));
                as_json(json!({"success": true, "transaction": tx, "network": "eip155:8453"}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test]
async fn a_facilitator_that_claims_a_settlement_the_token_does_not_show_is_not_believed() {
    let world = World::new().await;
    let (url, task) = lying_facilitator().await;
    let store = MemoryStore::new();
    let facilitator = Facilitator::new(url, world.chain(), store.clone()).unwrap();
    let mut paid = Paid::start_on(&world, world.offer(0), store, facilitator, Route::default()).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payment = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payment))]).await;
    let outcome = paid.next_settlement().await.expect("it tried to settle");
    assert!(outcome.is_err(), "a settlement the chain does not show: {outcome:?}");
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "the answer was not delivered");
    assert_eq!(balances(&world).await, before);
    task.abort();
}

#[tokio::test]
async fn a_permit_that_settled_nothing_leaves_its_nonce_free_for_the_next_request() {
    let world = World::new().await;
    // One store, two routes: the first fails upstream, the second answers.
    let store = MemoryStore::new();
    let settler = || OnChainSettler::new(world.chain(), store.clone());
    let failing = Route { status: StatusCode::INTERNAL_SERVER_ERROR, ..Route::default() };
    let mut failed = Paid::start_on(&world, world.permit_offer(0), store.clone(), settler(), failing).await;
    let mut served = Paid::start_on(&world, world.permit_offer(0), store.clone(), settler(), Route::default()).await;
    let requirement = served.requirement().await;
    let before = balances(&world).await;
    let deadline = x402_support::unix_now() + 300;
    let first = x402_support::sign_permit(&world, &world.payer, PRICE, U256::ZERO, deadline);
    let response = failed.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &first))]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(failed.next_settlement().await.is_none(), "nothing delivered, nothing settled");
    assert_eq!(world.permit_nonce(world.payer.address()).await, U256::ZERO, "the nonce is still the payer's next");
    // The payer's next permit has the same nonce (the token's): it must pay.
    let next = x402_support::sign_permit(&world, &world.payer, PRICE, U256::ZERO, deadline + 1);
    let response = served.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &next))]).await;
    assert_eq!(response.status(), StatusCode::OK, "the same nonce pays once nothing was settled with it");
    let metered = COMPLETION.len() as u128;
    assert_eq!(served.next_settlement().await.expect("settled").unwrap().amount, Amount::new(metered));
    assert_eq!(balances(&world).await, (before.0 + metered, before.1 - metered));
    // The first permit, replayed now, is refused: its nonce is used.
    let replay = served.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &first))]).await;
    assert_eq!(replay.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(served.called(), 1);
}

#[tokio::test]
async fn an_sse_stream_paid_with_eip3009_settles_before_its_first_content_goes_out() {
    let world = World::new().await;
    // The inner stream sends its first event, then the rest only when the test says so.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let hold = Some(Arc::new(std::sync::Mutex::new(Some(wait))));
    let route = Route { content_type: "text/event-stream", body: STREAM, hold, ..Route::default() };
    let paid = Paid::start_with(&world, world.offer(0), route).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payment = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let request = Request::post("/v1/chat/completions")
        .header("host", "api.test")
        .header(PAYMENT_SIGNATURE, v2_header(&requirement, &payment))
        .body(Body::from("{}"))
        .unwrap();
    let response = paid.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.expect("a first frame").unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: "), "the first content event");
    // The stream is not over (the upstream holds the rest), yet the payee is paid.
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE), "settled before the content");
    go.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    let all = format!("{}{}", String::from_utf8_lossy(&first), String::from_utf8_lossy(&rest));
    assert!(all.starts_with(STREAM), "{all}");
    let receipt = last_event(&all, "payment-receipt").expect("a final payment-receipt event");
    assert_eq!((&receipt["success"], &receipt["amount"]), (&json!(true), &json!(PRICE.to_string())));
    assert_settled_on_chain(&world, receipt["transaction"].as_str().unwrap()).await;
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE), "settled once");
}

#[tokio::test]
async fn an_sse_stream_whose_eip3009_payment_fails_to_settle_delivers_no_content() {
    let world = World::new().await;
    let route = Route {
        content_type: "text/event-stream",
        body: STREAM,
        before: Some(payer_empties_its_account(&world)),
        ..Route::default()
    };
    let mut paid = Paid::start_with(&world, world.offer(0), route).await;
    let requirement = paid.requirement().await;
    let payee = world.balance(world.payee.address()).await;
    let payment = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payment))]).await;
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!body.contains("Hel"), "no content went out: {body}");
    let receipt = last_event(&body, "payment-receipt").expect("the stream ends with its receipt");
    assert_eq!(receipt["success"], false, "{receipt}");
    assert_eq!(receipt["extensions"]["status"], "failed");
    assert!(paid.next_settlement().await.expect("it tried").is_err());
    assert_eq!(world.balance(world.payee.address()).await, payee, "nothing moved");
}

/// A response body of the chunks sent on a channel, ending when it closes.
struct Chunks(mpsc::UnboundedReceiver<axum::body::Bytes>);

impl http_body::Body for Chunks {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Settles through `inner`, but holds each settlement until the test lets it go (a test
/// double), counting the settlements begun.
struct Held<Se> {
    inner: Se,
    begun: Arc<AtomicUsize>,
    entered: Arc<tokio::sync::Notify>,
    go: Arc<tokio::sync::Semaphore>,
}

impl<Se: Settle> Settle for Held<Se> {
    async fn settle(
        &self,
        verified: &tollgate::method::x402::Verified,
        actual: Amount,
    ) -> Result<tollgate::method::x402::Settlement, tollgate::method::x402::X402Error> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_one();
        let _permit = self.go.acquire().await;
        self.inner.settle(verified, actual).await
    }
}

#[tokio::test]
async fn a_client_gone_while_its_stream_settles_is_settled_once_to_the_end() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let (begun, entered, go) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Semaphore::new(0)));
    let held = Held {
        inner: OnChainSettler::new(world.chain(), store.clone()),
        begun: begun.clone(),
        entered: entered.clone(),
        go: go.clone(),
    };
    let route = Route { content_type: "text/event-stream", body: STREAM, ..Route::default() };
    let mut paid = Paid::start_on(&world, world.offer(0), store, held, route).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payment = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let request = Request::post("/v1/chat/completions")
        .header("host", "api.test")
        .header(PAYMENT_SIGNATURE, v2_header(&requirement, &payment))
        .body(Body::from("{}"))
        .unwrap();
    let response = paid.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The client waits for its first event while the payment settles, then leaves.
    let reading = tokio::spawn(async move { response.into_body().collect().await.map(|c| c.to_bytes()) });
    entered.notified().await;
    reading.abort();
    let _ = reading.await;
    go.add_permits(10);
    let outcome = paid.next_settlement().await.expect("settled").expect("on chain");
    assert_eq!(outcome.amount, Amount::new(PRICE));
    assert_eq!(balances(&world).await, (before.0 + PRICE, before.1 - PRICE));
    // The final hook waited for that settlement rather than starting another.
    tokio::task::yield_now().await;
    assert_eq!(begun.load(Ordering::SeqCst), 1, "one settlement begun");
    paid.no_settlement();
}

/// A Permit route whose upstream sends its first event and then nothing, paid with a permit
/// for the maximum valid until `deadline`: the route, the (payee, payer) balances before,
/// and the paid response's body, nothing read yet.
async fn permit_stream(world: &World, deadline: u64) -> (Paid, (u128, u128), Body) {
    let (never, wait) = tokio::sync::oneshot::channel::<()>();
    // The rest of the stream never comes.
    std::mem::forget(never);
    let hold = Some(Arc::new(std::sync::Mutex::new(Some(wait))));
    let route = Route { content_type: "text/event-stream", body: STREAM, hold, ..Route::default() };
    let paid = Paid::start_with(world, world.permit_offer(0), route).await;
    let requirement = paid.requirement().await;
    let before = balances(world).await;
    let permit = x402_support::sign_permit(world, &world.payer, PRICE, U256::ZERO, deadline);
    let request = Request::post("/v1/chat/completions")
        .header("host", "api.test")
        .header(PAYMENT_SIGNATURE, v2_header(&requirement, &permit))
        .body(Body::from("{}"))
        .unwrap();
    let response = paid.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (paid, before, response.into_body())
}

#[tokio::test]
async fn a_client_gone_mid_stream_pays_exactly_what_it_received_with_a_permit() {
    let world = World::new().await;
    let (mut paid, before, mut body) = permit_stream(&world, x402_support::unix_now() + 300).await;
    let first = body.frame().await.expect("a first frame").unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: ") && first.len() < STREAM.len());
    drop(body);
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("on chain");
    assert_eq!(settlement.amount, Amount::new(first.len() as u128), "the one event it received, per byte");
    assert_eq!(balances(&world).await, (before.0 + first.len() as u128, before.1 - first.len() as u128));
    paid.no_settlement();
}

/// A Permit settles at the end of the stream, with the permit: a payer who stops reading
/// mid-stream must not hold the settlement past the permit's deadline (Permit refuses it
/// then, and the content would be free). The stream's account is released at the
/// deadline less the settle margin (30 s here) without the body being polled.
#[tokio::test]
async fn a_permit_stream_whose_client_stops_reading_settles_before_the_permit_lapses() {
    let world = World::new().await;
    // Valid 33 s: the response must be over 3 s from now, 30 s before the permit lapses.
    let deadline = x402_support::unix_now() + 33;
    let (mut paid, before, mut body) = permit_stream(&world, deadline).await;
    let first = body.frame().await.expect("a first frame").unwrap().into_data().unwrap();
    // The body is held open and never polled until the settlement is over.
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("on chain");
    assert!(x402_support::unix_now() <= deadline, "settled while the permit was valid");
    assert_eq!(settlement.amount, Amount::new(first.len() as u128), "the one event it received, per byte");
    assert_eq!(balances(&world).await, (before.0 + first.len() as u128, before.1 - first.len() as u128));
    // Looking again, the payer finds the stream over: its receipt, no more content.
    let rest = tokio::time::timeout(Duration::from_secs(60), body.collect()).await.unwrap().unwrap().to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("event: payment-receipt") && !rest.contains("data: {\"id"), "{rest}");
    paid.no_settlement();
}

#[tokio::test]
async fn a_stream_whose_settlement_outlasts_the_wait_ends_with_a_pending_receipt_and_settles_later() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let held = Held {
        inner: OnChainSettler::new(world.chain(), store.clone()),
        begun: Arc::new(AtomicUsize::new(0)),
        entered: Arc::new(tokio::sync::Notify::new()),
        go: go.clone(),
    };
    let route = Route { content_type: "text/event-stream", body: STREAM, ..Route::default() };
    let mut paid = Paid::start_on(&world, world.permit_offer(0), store, held, route).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let permit = x402_support::sign_permit(&world, &world.payer, PRICE, U256::ZERO, x402_support::unix_now() + 300);
    // The layer waits 30 s for the settlement, then ends the stream saying it is pending.
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &permit))]).await;
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.starts_with(STREAM), "{body}");
    let receipt = last_event(&body, "payment-receipt").expect("a final payment-receipt event");
    assert_eq!((&receipt["success"], &receipt["extensions"]["status"]), (&json!(false), &json!("pending")));
    assert!(receipt["extensions"]["reference"].as_str().unwrap().starts_with("x402-permit:"), "{receipt}");
    assert_eq!(balances(&world).await, before, "not settled yet");
    // The settlement runs on, and lands.
    go.add_permits(10);
    let settlement = paid.next_settlement().await.expect("settled").expect("on chain");
    let gain = world.balance(world.payee.address()).await - before.0;
    assert_eq!(settlement.amount, Amount::new(gain));
    assert!(gain > 0);
}

alloy::sol! {
    struct CancelAuthorization { address authorizer; bytes32 nonce; }
}

/// Before the inner service answers, the payer cancels the authorization it paid with
/// (EIP-3009 `cancelAuthorization`, as USDC has): its nonce now reads as used.
fn payer_cancels(world: &World, nonce: alloy::primitives::B256) -> BeforeAnswer {
    use alloy::providers::ProviderBuilder;
    use alloy::signers::SignerSync;
    use alloy::sol_types::{SolStruct, eip712_domain};
    let (url, token, payer) = (world.anvil.endpoint_url(), world.token, world.payer.clone());
    Arc::new(move || {
        let (url, payer) = (url.clone(), payer.clone());
        Box::pin(async move {
            let domain = eip712_domain! {
                name: x402_support::NAME.to_owned(), version: x402_support::VERSION.to_owned(),
                chain_id: x402_support::CHAIN_ID, verifying_contract: token,
            };
            let cancel = CancelAuthorization { authorizer: payer.address(), nonce };
            let signature = payer.sign_hash_sync(&cancel.eip712_signing_hash(&domain)).unwrap();
            let authorizer = payer.address();
            let provider = ProviderBuilder::new().wallet(payer).connect_http(url);
            let token = x402_support::AuthorizedToken::new(token, provider);
            let v = 27 + u8::from(signature.v());
            let (r, s) = (signature.r().into(), signature.s().into());
            let sent = token.cancelAuthorization(authorizer, nonce, v, r, s).send().await.unwrap();
            assert!(sent.get_receipt().await.unwrap().status(), "the authorization is canceled");
        })
    })
}

#[tokio::test]
async fn an_authorization_its_payer_canceled_meanwhile_is_not_taken_for_a_settlement() {
    let world = World::new().await;
    let authorization = world.authorization(world.payer.address(), PRICE);
    let route = Route { before: Some(payer_cancels(&world, authorization.nonce)), ..Route::default() };
    let mut paid = Paid::start_with(&world, world.offer(0), route).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payment = world.sign_transfer(&world.payer, authorization);
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payment))]).await;
    assert_eq!(paid.called(), 1);
    let outcome = paid.next_settlement().await.expect("it tried to settle");
    assert!(outcome.is_err(), "a canceled authorization pays nothing: {outcome:?}");
    assert_eq!(balances(&world).await, before, "the payee got nothing");
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "and the answer was not delivered");

    // The same through the official facilitator.
    let process = x402_support::FacilitatorProcess::start(&world, &chain::dev_signer(&world.anvil, 4)).await;
    let store = MemoryStore::new();
    let facilitator = Facilitator::new(process.url.clone(), world.chain(), store.clone()).unwrap();
    let authorization = world.authorization(world.payer.address(), PRICE);
    let route = Route { before: Some(payer_cancels(&world, authorization.nonce)), ..Route::default() };
    let mut paid = Paid::start_on(&world, world.offer(0), store, facilitator, route).await;
    let payment = world.sign_transfer(&world.payer, authorization);
    let response = paid.post(&[(&PAYMENT_SIGNATURE, &v2_header(&requirement, &payment))]).await;
    let outcome = paid.next_settlement().await.expect("it tried to settle");
    assert!(outcome.is_err(), "facilitator: a canceled authorization pays nothing: {outcome:?}");
    assert_eq!(balances(&world).await, before);
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
}
