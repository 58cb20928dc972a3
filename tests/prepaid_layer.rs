//! A prepaid balance through the PaymentLayer with the OpenAI token meter: a signed-in
//! payer's stream is debited exactly its priced usage, with a usage record written by the
//! same store step; a stream that reaches the end of the balance ends cleanly
//! (`finish_reason: "length"`, `[DONE]`) and the balance drops by exactly what was
//! delivered; an upstream error costs nothing; sixteen parallel requests on a small
//! balance never spend more than it holds (the sum of `GET /v1/usage` ≤ the deposit); a
//! stream whose instance dies is debited and recorded by the reclaim of its lease.

#![cfg(feature = "prepaid")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use alloy::primitives::Address;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::post;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::task::JoinSet;
use tollgate::meter::OpenAiTokenMeter;
use tollgate::method::prepaid::{Prepaid, PrepaidApi, Siwx};
use tollgate::store::{ChannelState, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;

const SECRET: &str = "test-secret-of-at-least-32-bytes!";

fn chunk(text: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// Five chunks, then the provider's usage (3 prompt, 5 completion tokens) and `[DONE]`.
fn completion() -> String {
    let words: String = ["one", " two", " three", " four", " five"].iter().map(|w| chunk(w)).collect();
    words
        + "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\n"
        + "data: [DONE]\n\n"
}

struct App {
    app: Router,
    store: MemoryStore,
    prepaid: Prepaid,
}

/// `/v1/chat/completions` streaming [`completion`] (or failing with 500 when `status` says
/// so), priced 2 per output token, and the prepaid endpoints.
fn app(status: StatusCode) -> App {
    app_with(status, false, None)
}

/// [`app`]; `wrapped`: the method sits second in a tuple, behind an absent one, in an
/// `Option<Arc<_>>` (as a proxy configures methods), so its token check is forwarded.
/// `max_output`: the request caps its output (`max_tokens`), so it has a maximum price.
fn app_with(status: StatusCode, wrapped: bool, max_output: Option<u64>) -> App {
    let siwx = Siwx::new(&Secret::new(SECRET), "api.test", "http://api.test/v1/sign-in", [8453]);
    let prepaid = Prepaid::new(siwx);
    let store = MemoryStore::new();
    let inner = post(move || async move {
        Response::builder()
            .status(status)
            .header("content-type", "text/event-stream")
            .body(Body::from(completion()))
            .unwrap()
    });
    let quote = Quote::new(Price::tokens(Rate::FREE, Rate::per_unit(Amount::new(2))));
    let quote = match max_output {
        Some(most) => quote.max_output(most),
        None => quote,
    };
    let chat = match wrapped {
        true => inner.route_layer(
            PaymentLayer::new(
                (None::<Prepaid>, Some(Arc::new(prepaid.clone()))),
                store.clone(),
                "api.test",
                Secret::new(SECRET),
            )
            .pricing(quote)
            .meter(OpenAiTokenMeter::default()),
        ),
        false => inner.route_layer(
            PaymentLayer::new(prepaid.clone(), store.clone(), "api.test", Secret::new(SECRET))
                .pricing(quote)
                .meter(OpenAiTokenMeter::default()),
        ),
    };
    let api = PrepaidApi::new(prepaid.clone(), store.clone());
    let app = Router::new()
        .route("/v1/chat/completions", chat)
        .route_service("/v1/usage", api.clone())
        .route_service("/v1/balance", api);
    App { app, store, prepaid }
}

impl App {
    /// A payer with `deposit` on the balance, and its bearer header.
    async fn payer(&self, deposit: u128) -> (Address, String) {
        static NEXT: AtomicU16 = AtomicU16::new(1);
        let payer = Address::with_last_byte(0x40).wrapping_add_u16(NEXT.fetch_add(1, Ordering::Relaxed));
        self.store.credit(&Prepaid::account(payer), Amount::new(deposit), &format!("deposit:{payer}")).await.unwrap();
        (payer, format!("Bearer {}", self.prepaid.tokens().issue(payer).token))
    }

    async fn admit(&self, bearer: &str) -> Response {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", bearer)
            .body(Body::from(r#"{"model":"m","stream":true,"messages":[]}"#))
            .unwrap();
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn chat(&self, bearer: &str) -> (StatusCode, String) {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", bearer)
            .body(Body::from(r#"{"model":"m","stream":true,"messages":[]}"#))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn balance(&self, payer: Address) -> ChannelState {
        self.store.load(&Prepaid::account(payer)).await.unwrap().unwrap()
    }

    /// `GET /v1/usage`: the records' costs.
    async fn usage(&self, bearer: &str) -> Vec<u128> {
        let request = Request::get("/v1/usage?limit=100").header("authorization", bearer).body(Body::empty()).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        body["usage"].as_array().unwrap().iter().map(|r| r["cost"].as_str().unwrap().parse().unwrap()).collect()
    }
}

/// Trait-free `Address + n`, for distinct payers.
trait Plus {
    fn wrapping_add_u16(self, n: u16) -> Address;
}

impl Plus for Address {
    fn wrapping_add_u16(self, n: u16) -> Address {
        let mut bytes = self.0.0;
        bytes[18..].copy_from_slice(&n.to_be_bytes());
        Address::from(bytes)
    }
}

#[tokio::test]
async fn a_stream_is_debited_exactly_its_priced_usage_with_one_usage_record() {
    for wrapped in [false, true] {
        exact_debit(app_with(StatusCode::OK, wrapped, None)).await;
    }
}

async fn exact_debit(app: App) {
    let (payer, bearer) = app.payer(1_000).await;
    let (status, text) = app.chat(&bearer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.starts_with(&completion()), "{text}");
    // 5 completion tokens × 2, from the provider's usage.
    let balance = app.balance(payer).await;
    assert_eq!(
        (balance.spent, balance.reserved, balance.available()),
        (Amount::new(10), Amount::ZERO, Amount::new(990))
    );
    assert_eq!(app.usage(&bearer).await, vec![10]);
}

#[tokio::test]
async fn a_stream_that_reaches_the_end_of_the_balance_ends_cleanly() {
    let app = app(StatusCode::OK);
    // While it streams, text counts one token per byte (an upper bound): 13 × 2 pays for
    // "one" and " two" (8 tokens, 16) but not " three" as well.
    let (payer, bearer) = app.payer(26).await;
    let (status, text) = app.chat(&bearer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("\"one\"") && text.contains("\" two\""), "{text}");
    assert!(!text.contains("four"), "{text}");
    let ending = text.find("\"finish_reason\":\"length\"").expect("a clean finish chunk");
    assert!(ending < text.find("data: [DONE]").expect("[DONE] follows"), "{text}");
    let balance = app.balance(payer).await;
    let usage = app.usage(&bearer).await;
    assert_eq!(usage.len(), 1);
    // The balance dropped by exactly what the record says was delivered, within the deposit.
    assert_eq!(balance.spent, Amount::new(usage[0]));
    assert!(balance.spent <= Amount::new(26) && balance.spent > Amount::ZERO, "{balance:?}");
    assert_eq!(balance.reserved, Amount::ZERO);
}

#[tokio::test]
async fn an_upstream_error_costs_nothing() {
    let app = app(StatusCode::INTERNAL_SERVER_ERROR);
    let (payer, bearer) = app.payer(1_000).await;
    let (status, _) = app.chat(&bearer).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let balance = app.balance(payer).await;
    assert_eq!((balance.spent, balance.reserved), (Amount::ZERO, Amount::ZERO));
    assert!(app.usage(&bearer).await.iter().all(|cost| *cost == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_parallel_requests_on_a_small_balance_never_overspend() {
    const DEPOSIT: u128 = 50;
    let app = Arc::new(app(StatusCode::OK));
    let (payer, bearer) = app.payer(DEPOSIT).await;
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let (app, bearer) = (app.clone(), bearer.clone());
        tasks.spawn(async move { app.chat(&bearer).await });
    }
    let mut served = 0;
    while let Some(joined) = tasks.join_next().await {
        let (status, text) = joined.unwrap();
        match status {
            StatusCode::OK => {
                served += 1;
                // Whole, or cut with a finish chunk: either way `[DONE]`, then the receipt.
                let done = text.find("data: [DONE]").expect("every served stream ends cleanly");
                assert!(done < text.find("event: payment-receipt").expect("a receipt"), "{text}");
            }
            other => assert_eq!(other, StatusCode::PAYMENT_REQUIRED),
        }
    }
    assert!(served >= 1);
    let usage = app.usage(&bearer).await;
    let balance = app.balance(payer).await;
    let total: u128 = usage.iter().sum();
    assert!(total <= DEPOSIT, "debits {total} exceed the deposit {DEPOSIT}");
    assert_eq!(Amount::new(total), balance.spent, "the usage history and the balance agree");
    assert_eq!(balance.reserved, Amount::ZERO);
}

#[tokio::test]
async fn a_capped_request_reserves_its_maximum_whole_or_is_refused() {
    // Up to 100 output tokens at 2: a maximum of 200.
    let app = app_with(StatusCode::OK, false, Some(100));
    let (payer, bearer) = app.payer(199).await;
    let refused = app.admit(&bearer).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("199 available"), "{body:?}");
    assert_eq!((app.balance(payer).await.spent, app.balance(payer).await.reserved), (Amount::ZERO, Amount::ZERO));
    for (deposit, reserved) in [(1_000, 200), (200, 200)] {
        let (payer, bearer) = app.payer(deposit).await;
        let response = app.admit(&bearer).await;
        assert_eq!(response.status(), StatusCode::OK);
        // Admitted, nothing read yet: the reservation is live.
        assert_eq!(app.balance(payer).await.reserved, Amount::new(reserved));
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let balance = app.balance(payer).await;
        assert_eq!((balance.spent, balance.reserved), (Amount::new(10), Amount::ZERO), "{deposit}: {text:?}");
    }
}

/// Finding 04 through the layer: an instance that dies mid-stream (its response body is
/// neither dropped nor polled again, so it never releases nor renews) leaves a reservation
/// the store reclaims once the lease lapses. The reclaim debits what the last renewal
/// reported delivered and, in the same step, appends the response's usage record, marked
/// reclaimed: `GET /v1/usage` still adds up to what was spent.
#[tokio::test(start_paused = true)]
async fn a_stream_whose_instance_dies_is_recorded_by_the_reclaim() {
    let siwx = Siwx::new(&Secret::new(SECRET), "api.test", "http://api.test/v1/sign-in", [8453]);
    let prepaid = Prepaid::new(siwx);
    let store = MemoryStore::new();
    // One chunk, then an upstream with more to say that never says it.
    let inner = post(|| async {
        let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(chunk("one"))]);
        let stream = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
    });
    let quote = Quote::new(Price::tokens(Rate::FREE, Rate::per_unit(Amount::new(2))));
    let chat = inner.route_layer(
        PaymentLayer::new(prepaid.clone(), store.clone(), "api.test", Secret::new(SECRET))
            .pricing(quote)
            .meter(OpenAiTokenMeter::default()),
    );
    let api = PrepaidApi::new(prepaid.clone(), store.clone());
    let app =
        App { app: Router::new().route("/v1/chat/completions", chat).route_service("/v1/usage", api), store, prepaid };
    let (payer, bearer) = app.payer(1_000).await;
    let response = app.admit(&bearer).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"one\""));
    // Streams on (waiting for more) past a renewal, which reports what was delivered.
    let lease = app.store.lease();
    assert!(tokio::time::timeout(lease / 2, body.frame()).await.is_err(), "the upstream has nothing more");
    // The instance dies: nothing releases the reservation, nothing renews it.
    std::mem::forget(body);
    tokio::time::sleep(lease * 2).await;
    let balance = app.balance(payer).await;
    assert_eq!(balance.reserved, Amount::ZERO, "the lapsed reservation was reclaimed");
    assert!(balance.spent > Amount::ZERO, "the reclaim charged what was delivered: {balance:?}");
    let usage = app.usage(&bearer).await;
    assert_eq!(usage, vec![balance.spent.get()], "one record, costing what was spent");
    let records = app.store.usage(&Prepaid::account(payer), 10).await.unwrap();
    let record: Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!((record["reclaimed"].as_bool(), record["path"].as_str()), (Some(true), Some("/v1/chat/completions")));
}
