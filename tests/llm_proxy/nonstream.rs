//! Issue 8, item 2, in process (the whole app with a fake payment method): a client that
//! does not ask for a stream gets one `chat.completion` object with its `usage` and cost,
//! and is charged exactly that usage; an upstream failure before the end is not charged;
//! a session short of headroom gets a `402` at once and pays nothing it was not given.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Secret};
use tower::ServiceExt;

use crate::proxy::app::{AppState, router};
use crate::proxy::catalog::Catalog;
use crate::proxy::chat::ChatRequest;
use crate::proxy::payment::{PaymentSettings, configure};
use crate::proxy::simulated::{self, Simulator};
use crate::proxy::upstream::Upstreams;
use crate::support::*;
use crate::test_support::{REALM, SECRET, TestMethod, challenge_of, credential, open_payload};

struct App {
    router: Router,
    store: MemoryStore,
    catalog: Arc<Catalog>,
}

fn app(config: &crate::proxy::config::Config, simulated: bool) -> App {
    let catalog = Arc::new(Catalog::from_config(config, simulated).unwrap());
    let store = MemoryStore::new();
    let settings = PaymentSettings {
        voucher_window: 16,
        pause_deadline: Duration::from_secs(5),
        keep_alive: Duration::from_secs(1),
        ..settings()
    };
    let layer =
        configure(PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)), &settings, catalog.clone());
    let upstreams = Upstreams::new(Simulator::new(0.0), Duration::from_secs(5), Duration::from_secs(5));
    let state = AppState { catalog: catalog.clone(), upstreams, max_body_bytes: 1 << 20 };
    App { router: router(state, Some(layer)), store, catalog }
}

/// A fake upstream selling model `m`.
fn upstream_config(fake: &Fake) -> crate::proxy::config::Config {
    config(&format!(
        "[upstreams.a]\nbase_url = \"{}\"\n[[models]]\nid = \"m\"\n\
         providers = [{{ upstream = \"a\", input_per_1m = 2.5, output_per_1m = 10.0 }}]\n",
        fake.base_url()
    ))
}

impl App {
    async fn send(&self, body: &Value, authorization: Option<HeaderValue>) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::post("/v1/chat/completions").header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let body = body.to_string();
        let request = request.header(header::CONTENT_LENGTH, body.len()).body(Body::from(body)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
            .await
            .expect("the answer ended")
            .unwrap()
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "not_json": String::from_utf8_lossy(&bytes).into_owned() }));
        (status, headers, value)
    }

    /// Sends `body` unpaid for its challenge, then with an open of `channel` at `cumulative`.
    async fn open_and_send(
        &self,
        body: &Value,
        channel: &str,
        cumulative: u128,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let (status, headers, _) = self.send(body, None).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let response = http::Response::from_parts(
            {
                let mut parts = http::Response::new(()).into_parts().0;
                parts.headers = headers;
                parts
            },
            (),
        );
        let challenge = challenge_of(&response);
        self.send(body, Some(credential(&challenge, open_payload(channel, cumulative, 1_000_000_000)))).await
    }

    /// The channel once nothing is reserved any more (a release runs on its own).
    async fn settled(&self, channel: &str) -> ChannelState {
        for _ in 0..500 {
            let state = self.store.load(&ChannelId::new(channel)).await.unwrap().unwrap();
            if state.reserved == Amount::ZERO {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the reservation of {channel} was never released");
    }
}

fn dollars(catalog: &Catalog, units: u128) -> f64 {
    catalog.dollars(units)
}

#[tokio::test]
async fn nonstream_a_completion_is_one_chat_completion_object_charged_exactly_its_usage() {
    let app = app(&config(""), true);
    let model = app.catalog.get("tollgate-sim").unwrap().clone();
    let request = chat("tollgate-sim", "What does a paid proxy do with my tokens?");
    let expected = simulated::completion(&ChatRequest::parse(request.to_string().as_bytes()).unwrap());

    // A channel holding headroom (a v1 plain client that paid ahead): served from it.
    let (status, headers, body) = app.open_and_send(&request, "0xa11", 1_000_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{body}");
    assert_eq!(body["model"], "tollgate-sim");
    assert!(body["created"].as_u64().is_some());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], expected.text);
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], expected.prompt_tokens);
    assert_eq!(usage["completion_tokens"], expected.completion_tokens);

    let priced = cost(&model.price, expected.prompt_tokens, expected.completion_tokens);
    assert_eq!(usage["cost"].as_f64(), Some(dollars(&app.catalog, priced)), "usage.cost in dollars");
    assert_eq!(headers["x-cost"].to_str().unwrap().parse::<f64>().unwrap(), dollars(&app.catalog, priced));
    let state = app.settled("0xa11").await;
    assert_eq!(state.spent, Amount::new(priced), "charged exactly the usage it was shown");
}

#[tokio::test]
async fn nonstream_an_upstream_answer_is_merged_and_charged_its_usage() {
    let fake = fake(Behaviour::Stream(vec!["Hel", "lo ", "world"])).await;
    let app = app(&upstream_config(&fake), false);
    let model = app.catalog.get("m").unwrap().clone();
    let (status, _, body) = app.open_and_send(&chat("m", "Hi"), "0xb22", 1_000_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello world");
    // The fake reports 7 prompt tokens and its own completion count.
    let completion =
        ["Hel", "lo ", "world"].iter().map(|p| crate::proxy::chat::estimate_text_tokens(p.len())).sum::<u64>();
    assert_eq!(
        (body["usage"]["prompt_tokens"].as_u64(), body["usage"]["completion_tokens"].as_u64()),
        (Some(7), Some(completion))
    );
    let state = app.settled("0xb22").await;
    assert_eq!(state.spent, Amount::new(cost(&model.price, 7, completion)));
    let sent = &fake.requests.lock().unwrap()[0].1;
    assert_eq!((sent["stream"].as_bool(), sent["stream_options"]["include_usage"].as_bool()), (Some(true), Some(true)));
}

#[tokio::test]
async fn nonstream_an_upstream_failure_before_completion_is_not_charged() {
    for behaviour in [Behaviour::Die(vec!["Hel", "lo"]), Behaviour::Status(500)] {
        let fake = fake(behaviour.clone()).await;
        let app = app(&upstream_config(&fake), false);
        let (status, _, body) = app.open_and_send(&chat("m", "Hi"), "0xc33", 1_000_000).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{behaviour:?}: {body}");
        assert_eq!(body["error"]["type"], "upstream_error", "{body}");
        assert!(body.get("choices").is_none());
        let state = app.settled("0xc33").await;
        assert_eq!(state.spent, Amount::ZERO, "{behaviour:?}: nothing charged");
        assert_eq!(fake.hits(), 1);
    }
}

#[tokio::test]
async fn nonstream_a_session_short_of_headroom_gets_a_402_before_the_upstream_is_called() {
    let fake = fake(Behaviour::Stream(vec!["Hello"])).await;
    let app = app(&upstream_config(&fake), false);
    let model = app.catalog.get("m").unwrap().clone();
    let mut request = chat("m", "Hi");
    request["max_completion_tokens"] = json!(200);
    // What mppx's open pays: one unit.
    let unit = model.price.output.unit_price().get();
    let (status, _, body) = app.open_and_send(&request, "0xd44", unit).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("stream: true"), "says how to pay: {body}");
    let state = app.settled("0xd44").await;
    assert_eq!((state.spent, fake.hits()), (Amount::ZERO, 0), "nothing charged, the upstream never called");
}

#[tokio::test]
async fn nonstream_a_session_short_of_the_completion_pays_only_the_prompt_it_bought() {
    let fake = fake(Behaviour::Stream(vec!["Hello, this is a much longer answer than the headroom covers."])).await;
    let app = app(&upstream_config(&fake), false);
    let model = app.catalog.get("m").unwrap().clone();
    let request = chat("m", "Hi");
    // Headroom for the prompt bound and little more: no cap, so only the prompt is checked.
    let prompt = cost(&model.price, prompt_tokens(&request), 0);
    let (status, _, body) =
        app.open_and_send(&request, "0xe55", prompt + 2 * model.price.output.unit_price().get()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    assert!(body.get("choices").is_none(), "no content went out");
    let state = app.settled("0xe55").await;
    assert_eq!(fake.hits(), 1);
    // The proxy bought the prompt when it called the upstream: that (its bound) is charged,
    // none of the completion, which never went out.
    assert_eq!(state.spent, Amount::new(prompt), "the prompt the proxy bought, nothing more");
}

#[tokio::test]
async fn nonstream_a_streamed_request_still_streams() {
    let app = app(&config(""), true);
    let mut request = chat("tollgate-sim", "Hi");
    request["stream"] = json!(true);
    let (status, headers, body) = app.open_and_send(&request, "0xf66", 1_000_000).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    assert!(body["not_json"].as_str().unwrap().contains("chat.completion.chunk"));
}
