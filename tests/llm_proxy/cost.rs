//! Issue 13, part 5, in process (the whole app with a fake payment method): every paid
//! completion reports its cost as OpenRouter does, and that cost is the `/v1/models` price
//! applied to its usage, which is exactly what the payment charged (the receipt's `spent`
//! and the store's).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Secret};
use tower::ServiceExt;

use crate::proxy::app::{AppState, router};
use crate::proxy::catalog::Catalog;
use crate::proxy::payment::{PaymentSettings, configure};
use crate::proxy::simulated::Simulator;
use crate::proxy::upstream::Upstreams;
use crate::support::*;
use crate::test_support::{REALM, SECRET, TestMethod, challenge_of, credential, open_payload};

fn app() -> (Router, MemoryStore) {
    let catalog = Arc::new(Catalog::from_config(&config(""), true).unwrap());
    let store = MemoryStore::new();
    let settings = PaymentSettings { voucher_window: 16, ..settings() };
    let layer =
        configure(PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)), &settings, catalog.clone());
    let upstreams = Upstreams::new(Simulator::new(0.0), Duration::from_secs(5), Duration::from_secs(5));
    let state = AppState { catalog, upstreams, max_body_bytes: 1 << 20 };
    (router(state, Some(layer)), store)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect()).await.unwrap().unwrap();
    (status, headers, String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

fn post(body: &Value, authorization: Option<HeaderValue>) -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions").header(header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// Sends `body` unpaid for its challenge, then paid by opening `channel` with headroom.
async fn paid(app: &Router, body: &Value, channel: &str) -> (StatusCode, HeaderMap, String) {
    let (status, headers, _) = send(app, post(body, None)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let mut challenged = http::Response::new(());
    *challenged.headers_mut() = headers;
    let challenge = challenge_of(&challenged);
    send(app, post(body, Some(credential(&challenge, open_payload(channel, 1_000_000, 1_000_000_000))))).await
}

/// What `usage` costs at the `/v1/models` price of `model`, in base units: each side's
/// dollars per million tokens in base units, rounded up per side (as the proxy prices).
async fn listed_cost(app: &Router, model: &str, usage: &Value) -> u128 {
    let (status, _, list) = send(app, Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_str(&list).unwrap();
    let listed = list["data"].as_array().unwrap().iter().find(|m| m["id"] == model).expect("the model is listed");
    let pricing = &listed["pricing"];
    let scale = 10f64.powi(pricing["decimals"].as_i64().unwrap() as i32);
    let per_million = |key: &str| (pricing[key].as_f64().unwrap() * scale).round() as u128;
    let side =
        |key: &str, tokens: &str| (per_million(key) * u128::from(usage[tokens].as_u64().unwrap())).div_ceil(1_000_000);
    side("input_per_1m", "prompt_tokens") + side("output_per_1m", "completion_tokens")
}

fn dollars(units: u128) -> f64 {
    units as f64 / 1e6
}

#[tokio::test]
async fn cost_a_stream_reports_its_cost_in_the_usage_chunk_at_the_listed_price() {
    let (app, store) = app();
    let mut request = chat("tollgate-sim", "How much did this answer cost?");
    request["stream"] = json!(true);
    let (status, _, text) = paid(&app, &request, "0xc057").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let usage_chunk: Value = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|chunk| chunk["usage"].is_object())
        .expect("a final usage chunk");
    let usage = &usage_chunk["usage"];
    let listed = listed_cost(&app, "tollgate-sim", usage).await;
    assert!(listed > 0);
    assert_eq!(usage["cost_base_units"], listed.to_string(), "{usage}");
    assert_eq!(usage["cost"].as_f64(), Some(dollars(listed)), "{usage}");

    let at = text.rfind("event: payment-receipt\ndata: ").expect("a receipt event");
    let receipt: Value = serde_json::from_str(text[at..].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(receipt["spent"], listed.to_string(), "charged what it reported");
    let state = store.load(&ChannelId::new("0xc057")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(listed), Amount::ZERO));
}

#[tokio::test]
async fn cost_a_plain_answer_reports_its_cost_in_usage_and_a_header_at_the_listed_price() {
    let (app, store) = app();
    let (status, headers, text) = paid(&app, &chat("tollgate-sim", "And this one?"), "0xc058").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let completion: Value = serde_json::from_str(&text).unwrap();
    let usage = &completion["usage"];
    let listed = listed_cost(&app, "tollgate-sim", usage).await;
    assert_eq!(usage["cost_base_units"], listed.to_string(), "{usage}");
    assert_eq!(usage["cost"].as_f64(), Some(dollars(listed)), "{usage}");
    assert_eq!(headers["x-cost"].to_str().unwrap().parse::<f64>().unwrap(), dollars(listed));
    // The release runs on its own: wait for the reservation to go.
    for _ in 0..500 {
        let state = store.load(&ChannelId::new("0xc058")).await.unwrap().unwrap();
        if state.reserved == Amount::ZERO {
            assert_eq!(state.spent, Amount::new(listed), "charged what it reported");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the reservation was never released");
}
