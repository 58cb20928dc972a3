//! Every row of the error table, OpenAI-shaped, and none of them charged.

use std::time::Duration;

use http::{StatusCode, header};
use serde_json::{Value, json};
use tollgate::Amount;
use tollgate::wire::mpp::Challenge;

use crate::demo::stack::{Options, Stack};
use crate::proxy::simulated::{Fault, Simulator};
use crate::support::*;

fn options(simulated: bool, simulator: Option<Simulator>) -> Options {
    Options {
        simulated,
        simulator,
        voucher_window: 256,
        pause_deadline: Duration::from_secs(10),
        keep_alive: Duration::from_secs(15),
    }
}

/// A stack selling model `m` from `providers` (TOML inline tables naming `a`, `b`).
async fn stack_with(upstreams: &[(&str, String)], providers: &str) -> Stack {
    let mut extra = String::new();
    for (name, url) in upstreams {
        extra.push_str(&format!("[upstreams.{name}]\nbase_url = \"{url}\"\n"));
    }
    extra.push_str(&format!("[[models]]\nid = \"m\"\nproviders = [{providers}]\n"));
    Stack::start(&config(&extra), options(false, None)).await.unwrap()
}

/// Opens a channel for `request`'s model, pays its prompt with a voucher (so the upstream
/// is called at once and its error is the response's status), sends it, and checks
/// nothing was charged.
async fn paid_error(stack: &Stack, request: &Value) -> (StatusCode, Value) {
    let mut client = stack.client(2);
    stack.open(&mut client, request, 100_000).await.unwrap();
    let model = stack.proxy.catalog.get(request["model"].as_str().unwrap()).unwrap();
    let paid = model.price.output.unit_price().get() + cost(&model.price, prompt_tokens(request), 0);
    client.voucher(paid).await.unwrap();
    let streamed = client.stream(request, |_| crate::demo::client::Flow::Continue).await.unwrap();
    let state = stack.state(client.channel().unwrap()).await.unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "an error is not charged");
    assert_eq!(state.accepted, Amount::new(paid), "only the prompt's voucher was paid");
    (streamed.status, streamed.body.unwrap_or(Value::Null))
}

fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn invalid_json_is_400_and_asks_for_no_payment() {
    let (server, _proxy) = offline(&config("")).await;
    let (status, headers, body) = post_raw(&server.url(""), b"{\"model\": \"tollgate-sim\", ".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&body), "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE), "no challenge: nothing to pay for");
}

#[tokio::test]
async fn schema_failures_are_400_naming_the_field() {
    let (server, _proxy) = offline(&config("")).await;
    let user = json!([{ "role": "user", "content": "hi" }]);
    let cases = [
        (json!({ "messages": user }), "model"),
        (json!({ "model": 5, "messages": user }), "model"),
        (json!({ "model": "tollgate-sim" }), "messages"),
        (json!({ "model": "tollgate-sim", "messages": [] }), "messages"),
        (json!({ "model": "tollgate-sim", "messages": [{ "role": "wizard", "content": "hi" }] }), "messages"),
        (json!({ "model": "tollgate-sim", "messages": [{ "role": "user", "content": 7 }] }), "messages"),
        (json!({ "model": "tollgate-sim", "messages": user, "temperature": 3 }), "temperature"),
        (json!({ "model": "tollgate-sim", "messages": user, "n": 0 }), "n"),
        (json!({ "model": "tollgate-sim", "messages": user, "stop": 5 }), "stop"),
        (json!({ "model": "tollgate-sim", "messages": user, "max_tokens": -1 }), "max_tokens"),
    ];
    for (request, param) in cases {
        let (status, _, body) = post_raw(&server.url(""), request.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
        assert_eq!(error_type(&body), "invalid_request_error", "{request}");
        assert_eq!(body["error"]["param"], param, "{request}: {body}");
    }
    let (status, _, body) = post_raw(&server.url(""), b"[1, 2]".to_vec()).await;
    assert_eq!((status, error_type(&body)), (StatusCode::BAD_REQUEST, "invalid_request_error"));
}

#[tokio::test]
async fn an_unpaid_request_is_402_with_the_per_token_price_before_anyone_pays() {
    let (server, _proxy) = offline(&config("")).await;
    let (status, headers, body) = post_raw(&server.url(""), chat("tollgate-sim", "hi").to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(error_type(&body), "payment_error");
    assert_eq!(body["error"]["code"], "payment-required");
    assert_eq!(body["type"], "https://paymentauth.org/problems/payment-required", "the problem members stay");
    let challenge = Challenge::parse_all(headers.get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
    assert_eq!((challenge.method.as_str(), challenge.intent.as_str()), ("tempo", "session"));
    let offer = challenge.decode_request().unwrap();
    // $10.00 per 1M output tokens plus the 10% fee: 11 base units (of 10^-6 $) per token.
    assert_eq!(offer["amount"], "11");
    assert_eq!(offer["unitType"], "llm_token");
    assert_eq!(challenge.description.as_deref(), Some("$2.75 per 1M input tokens, $11 per 1M output tokens"));
    // A bodiless POST (how sessions are opened and paid) is asked to pay too.
    let (status, headers, _) = post_raw(&server.url(""), Vec::new()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn an_unknown_model_or_path_is_404_before_payment() {
    let (server, _proxy) = offline(&config("")).await;
    let (status, headers, body) = post_raw(&server.url(""), chat("gpt-7", "hi").to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!((error_type(&body), body["error"]["code"].as_str()), ("invalid_request_error", Some("model_not_found")));
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
    let client =
        crate::demo::client::PayingClient::new(server.url(""), alloy::signers::local::PrivateKeySigner::random());
    let (status, body) = client.get_json("/v1/embeddings").await.unwrap();
    assert_eq!((status, error_type(&body)), (StatusCode::NOT_FOUND, "invalid_request_error"));
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let (server, _proxy) = offline(&config("")).await;
    let prompt = "x".repeat(1 << 20);
    let (status, headers, body) =
        post_raw(&server.url(""), chat("tollgate-sim", &prompt).to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        (error_type(&body), body["error"]["code"].as_str()),
        ("invalid_request_error", Some("request_too_large"))
    );
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
    // Just under the limit is read (and asks for payment).
    let prompt = "x".repeat((1 << 20) - 200);
    let (status, _, _) = post_raw(&server.url(""), chat("tollgate-sim", &prompt).to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test]
async fn every_provider_rate_limiting_is_429_and_charges_nothing() {
    let (a, b) = (fake(Behaviour::Status(429)).await, fake(Behaviour::Status(429)).await);
    let providers = r#"{ upstream = "a", input_per_1m = 2.5, output_per_1m = 10.0 },
                       { upstream = "b", input_per_1m = 3.0, output_per_1m = 12.0 }"#;
    let stack = stack_with(&[("a", a.base_url()), ("b", b.base_url())], providers).await;
    let (status, body) = paid_error(&stack, &chat("m", "hi")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((error_type(&body), body["error"]["code"].as_str()), ("upstream_error", Some("upstream_rate_limited")));
    assert_eq!((a.hits(), b.hits()), (1, 1), "both providers were tried");
}

#[tokio::test]
async fn an_unreachable_or_failing_upstream_is_502_and_charges_nothing() {
    let failing = fake(Behaviour::Status(503)).await;
    let refused = format!("http://{}/v1", closed_port().await);
    let providers = r#"{ upstream = "refused", input_per_1m = 2.5, output_per_1m = 10.0 },
                       { upstream = "failing", input_per_1m = 3.0, output_per_1m = 12.0 }"#;
    let stack = stack_with(&[("refused", refused), ("failing", failing.base_url())], providers).await;
    let (status, body) = paid_error(&stack, &chat("m", "hi")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!((error_type(&body), body["error"]["code"].as_str()), ("upstream_error", Some("upstream_unavailable")));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused:") && message.contains("failing: answered 503"), "{message}");
}

#[tokio::test]
async fn an_upstream_400_is_the_clients_400_and_charges_nothing() {
    let picky = fake(Behaviour::Status(400)).await;
    let stack =
        stack_with(&[("picky", picky.base_url())], r#"{ upstream = "picky", input_per_1m = 1, output_per_1m = 1 }"#)
            .await;
    let (status, body) = paid_error(&stack, &chat("m", "hi")).await;
    assert_eq!((status, error_type(&body)), (StatusCode::BAD_REQUEST, "invalid_request_error"));
    assert!(body["error"]["message"].as_str().unwrap().contains("fake upstream says 400"), "{body}");
}

#[tokio::test]
async fn an_internal_failure_is_500_and_charges_nothing() {
    let simulator = Simulator { fault: Some(Fault::Panic), ..Simulator::default() };
    let stack = Stack::start(&config(""), options(true, Some(simulator))).await.unwrap();
    let (status, body) = paid_error(&stack, &chat("tollgate-sim", "hi")).await;
    assert_eq!((status, error_type(&body)), (StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
    // The proxy keeps serving.
    let (server_status, _) = stack.client(3).get_json("/health").await.unwrap();
    assert_eq!(server_status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_models_are_free_and_models_carry_prices_with_the_fee() {
    let extra = r#"
[upstreams.a]
base_url = "http://127.0.0.1:9/v1"
[upstreams.b]
base_url = "http://127.0.0.1:9/v1"
[upstreams.keyless]
base_url = "http://127.0.0.1:9/v1"
api_key_env = "LLM_PROXY_TEST_UNSET_KEY"
[[models]]
id = "gpt-4o-mini"
owned_by = "openai"
providers = [{ upstream = "b", input_per_1m = 0.20, output_per_1m = 0.80 },
             { upstream = "a", input_per_1m = 0.15, output_per_1m = 0.60 }]
[[models]]
id = "only-keyless"
providers = [{ upstream = "keyless", input_per_1m = 1, output_per_1m = 1 }]
"#;
    let (server, proxy) = offline(&config(extra)).await;
    let client =
        crate::demo::client::PayingClient::new(server.url(""), alloy::signers::local::PrivateKeySigner::random());
    assert_eq!(client.get_json("/health").await.unwrap(), (StatusCode::OK, json!({ "status": "ok" })));
    let (status, models) = client.get_json("/v1/models").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "a model whose only upstream has no key is not sold: {models}");
    assert_eq!(data[0]["id"], "gpt-4o-mini");
    assert_eq!(data[0]["owned_by"], "openai");
    // The cheapest provider's price plus 10%, as paypertoken lists it.
    let pricing = &data[0]["pricing"];
    assert_eq!((pricing["input_per_1m"].as_f64(), pricing["output_per_1m"].as_f64()), (Some(0.165), Some(0.66)));
    assert_eq!(pricing["currency"], "USD");
    assert_eq!(proxy.catalog.get("gpt-4o-mini").unwrap().providers[0].upstream.name, "a", "cheapest first");
}
