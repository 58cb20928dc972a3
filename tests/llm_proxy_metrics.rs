//! The LLM proxy's `GET /metrics` (issue 13, part 2): after a `402` and one paid streamed
//! completion, the Prometheus page holds the payment layer's counters with exactly what
//! happened: one challenge, one credential accepted, one paid request, and the units and
//! base units the receipt says were charged.
//!
//! Its own test binary: the Prometheus recorder is the process's global one, so no other
//! test's requests count here.

#![cfg(feature = "full")]

#[allow(dead_code)]
#[path = "../examples/llm_proxy/demo/mod.rs"]
mod demo;
#[allow(dead_code)]
#[path = "../examples/llm_proxy/proxy/mod.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "llm_proxy/support.rs"]
mod support;
#[allow(unused_imports)]
#[path = "support/mod.rs"]
mod test_support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::store::MemoryStore;
use tollgate::{PaymentLayer, Secret};
use tower::ServiceExt;

use proxy::app::{AppState, router};
use proxy::catalog::Catalog;
use proxy::payment::configure;
use proxy::simulated::Simulator;
use proxy::upstream::Upstreams;
use test_support::{REALM, SECRET, TestMethod, challenge_of, credential, open_payload};

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect()).await.unwrap().unwrap();
    (status, headers, String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

/// The value of the one series `name` whose labels include `labels` (`key="value"`).
fn value(page: &str, name: &str, labels: &[&str]) -> Option<u128> {
    let mut found = page
        .lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name) && labels.iter().all(|label| line.contains(label)));
    let line = found.next()?;
    assert!(found.next().is_none(), "one series {name} {labels:?}:\n{page}");
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn metrics_after_a_402_and_a_paid_stream_counts_them_at_their_values() {
    let catalog = Arc::new(Catalog::from_config(&support::config(""), true).unwrap());
    let settings = support::settings();
    let layer = configure(
        PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, Secret::new(SECRET)),
        &settings,
        catalog.clone(),
    );
    let upstreams = Upstreams::new(Simulator::new(0.0), Duration::from_secs(5), Duration::from_secs(5));
    let app = router(AppState { catalog, upstreams, max_body_bytes: 1 << 20 }, Some(layer));

    let mut chat = support::chat("tollgate-sim", "Count me.");
    chat["stream"] = json!(true);
    let post = |authorization: Option<http::HeaderValue>| {
        let mut request = Request::post("/v1/chat/completions").header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        request.body(Body::from(chat.to_string())).unwrap()
    };
    let (status, headers, _) = send(&app, post(None)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let mut challenged = http::Response::new(());
    *challenged.headers_mut() = headers;
    let paying = credential(&challenge_of(&challenged), open_payload("0x3e7", 1_000_000, 1_000_000_000));
    let (status, _, text) = send(&app, post(Some(paying))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let at = text.rfind("event: payment-receipt\ndata: ").expect("a receipt event");
    let receipt: Value = serde_json::from_str(text[at..].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    let spent: u128 = receipt["spent"].as_str().unwrap().parse().unwrap();
    let units = receipt["units"].as_u64().unwrap();
    assert!(spent > 0 && units > 0, "{receipt}");

    let (status, headers, page) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let method = r#"method="test""#;
    assert_eq!(value(&page, "tollgate_challenges_total", &[]), Some(1), "{page}");
    assert_eq!(value(&page, "tollgate_credentials_accepted_total", &[method]), Some(1), "{page}");
    assert_eq!(value(&page, "tollgate_paid_requests_total", &[method, r#"intent="session""#]), Some(1), "{page}");
    assert_eq!(value(&page, "tollgate_units_charged_total", &[method]), Some(u128::from(units)), "{page}");
    assert_eq!(value(&page, "tollgate_base_units_charged_total", &[method]), Some(spent), "{page}");
    assert_eq!(value(&page, "tollgate_cutoffs_total", &[method]), None, "nothing was cut off:\n{page}");
    assert_eq!(value(&page, "tollgate_credentials_refused_total", &[]), None, "nothing was refused:\n{page}");
}
