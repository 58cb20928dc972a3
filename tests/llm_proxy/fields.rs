//! Issue 8, item 3: every chat-completions field reaches the upstream (a stub records the
//! request), only `model`, `stream` and `stream_options.include_usage` are overridden, and
//! the client's output cap is the quote's price cap.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate::{Pricing, Usage};

use crate::proxy::catalog::Catalog;
use crate::proxy::chat::ChatRequest;
use crate::proxy::payment::ChatPricing;
use crate::proxy::{Proxy, spawn};
use crate::support::*;

/// A proxy without the payment layer selling `gpt-test`, bought as `up-model` from `fake`.
fn fake_config(fake: &Fake) -> crate::proxy::config::Config {
    config(&format!(
        "[upstreams.a]\nbase_url = \"{}\"\n[[models]]\nid = \"gpt-test\"\n\
         providers = [{{ upstream = \"a\", model = \"up-model\", input_per_1m = 1.0, output_per_1m = 2.0 }}]\n",
        fake.base_url()
    ))
}

/// Every documented field of the chat-completions request, and one the API may add later.
fn every_field(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "messages": [{ "role": "developer", "content": "Answer in JSON." }, { "role": "user", "content": "Hi" }],
        "stream": stream,
        "stream_options": { "include_usage": false, "include_obfuscation": false },
        "max_completion_tokens": 64,
        "max_tokens": 128,
        "response_format": { "type": "json_schema", "json_schema": { "name": "a", "schema": { "type": "object" } } },
        "seed": 42,
        "user": "user-1234",
        "logprobs": true,
        "top_logprobs": 3,
        "parallel_tool_calls": false,
        "tools": [{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }],
        "tool_choice": "auto",
        "stop": ["\n\n"],
        "temperature": 0.2,
        "top_p": 0.9,
        "n": 1,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.1,
        "logit_bias": { "50256": -100 },
        "metadata": { "trace": "t-1" },
        "store": false,
        "reasoning_effort": "low",
        "service_tier": "default",
        "modalities": ["text"],
        "prediction": { "type": "content", "content": "{}" },
        "audio": { "voice": "alloy", "format": "wav" },
        "web_search_options": { "search_context_size": "low" },
        "verbosity": "low",
        "prompt_cache_key": "k-1",
        "safety_identifier": "s-1",
        "a_field_from_the_future": { "nested": [1, 2, 3] },
    })
}

#[tokio::test]
async fn fields_every_documented_field_reaches_the_upstream_and_only_model_and_stream_are_overridden() {
    for stream in [true, false] {
        let fake = fake(Behaviour::Stream(vec!["{\"a\":", "1}"])).await;
        let router = Proxy::unpaid(&fake_config(&fake), false, None).unwrap();
        let server = spawn(router, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let sent = every_field(stream);
        let (status, _, _) = post_raw(&server.url(""), sent.to_string().into_bytes()).await;
        assert_eq!(status, 200, "stream: {stream}");

        let requests = fake.requests.lock().unwrap();
        let (_, got) = requests.first().expect("the upstream was called");
        let mut expected = sent.clone();
        expected["model"] = json!("up-model");
        expected["stream"] = json!(true);
        expected["stream_options"] = json!({ "include_usage": true, "include_obfuscation": false });
        assert_eq!(got, &expected, "stream: {stream}: the upstream got the client's object");
    }
}

#[tokio::test]
async fn fields_null_fields_are_dropped_and_bad_known_fields_are_refused() {
    let fake = fake(Behaviour::Stream(vec!["ok"])).await;
    let router = Proxy::unpaid(&fake_config(&fake), false, None).unwrap();
    let server = spawn(router, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let mut request = chat("gpt-test", "Hi");
    request["seed"] = Value::Null;
    request["max_completion_tokens"] = Value::Null;
    let (status, _, _) = post_raw(&server.url(""), request.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let got = fake.requests.lock().unwrap()[0].1.clone();
    assert!(got.get("seed").is_none() && got.get("max_completion_tokens").is_none(), "{got}");

    for (field, value) in
        [("max_completion_tokens", json!(0)), ("max_completion_tokens", json!("8")), ("stream", json!(1))]
    {
        let mut request = chat("gpt-test", "Hi");
        request[field] = value;
        let (status, _, body) = post_raw(&server.url(""), request.to_string().into_bytes()).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["param"], field);
    }
    assert_eq!(fake.hits(), 1, "a refused request never reaches the upstream");
}

/// The quote of `request` as the payment layer prices it.
fn quote_of(catalog: &Arc<Catalog>, request: &Value) -> tollgate::Quote {
    let chat = Arc::new(ChatRequest::parse(request.to_string().as_bytes()).unwrap());
    let mut http = http::Request::post("/v1/chat/completions").body(()).unwrap();
    http.extensions_mut().insert(chat);
    let (head, ()) = http.into_parts();
    let pricing = ChatPricing { catalog: catalog.clone() };
    pricing.quote(&head, Some(&Bytes::new())).unwrap().unwrap()
}

#[test]
fn fields_the_clients_output_cap_is_the_price_cap() {
    let catalog = Arc::new(Catalog::from_config(&config(""), true).unwrap());
    let mut request = chat("tollgate-sim", "Hi");
    let prompt = prompt_tokens(&request);

    // No cap: the prompt upfront, no output cap.
    let quote = quote_of(&catalog, &request);
    assert_eq!((quote.upfront, quote.max_output), (Usage { input: prompt, output: 0 }, None));

    // `max_completion_tokens` wins over `max_tokens`, times `n`.
    request["max_tokens"] = json!(500);
    request["max_completion_tokens"] = json!(50);
    request["n"] = json!(2);
    request["stream"] = json!(true);
    let quote = quote_of(&catalog, &request);
    assert_eq!(quote.max_output, Some(100), "the cap of the whole response");
    assert_eq!(quote.upfront, Usage { input: prompt, output: 0 }, "a stream pays its output as it goes");

    // Non-streamed: the whole cap is paid before the upstream is called.
    request["stream"] = json!(false);
    let quote = quote_of(&catalog, &request);
    assert_eq!((quote.upfront, quote.max_output), (Usage { input: prompt, output: 100 }, Some(100)));

    // `max_tokens` alone is the cap too.
    let mut request = chat("tollgate-sim", "Hi");
    request["max_tokens"] = json!(30);
    assert_eq!(quote_of(&catalog, &request).max_output, Some(30));
}

#[test]
fn fields_the_meter_gets_the_cap_and_the_models_hidden_output_allowance() {
    use tollgate::meter::MakeMeter;

    use crate::proxy::payment::PromptMeter;
    let config = config(
        "[upstreams.a]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nid = \"reasoner\"\nhidden_output_tokens = 40\n\
         providers = [{ upstream = \"a\", input_per_1m = 1.0, output_per_1m = 4.0 }]\n\
         [[models]]\nid = \"plain\"\nproviders = [{ upstream = \"a\", input_per_1m = 1.0, output_per_1m = 4.0 }]\n",
    );
    let catalog = Arc::new(Catalog::from_config(&config, false).unwrap());
    let meter_of = |model: &str, cap: Option<u64>| {
        let mut request = chat(model, "Hi");
        if let Some(cap) = cap {
            request["max_completion_tokens"] = json!(cap);
        }
        let chat = Arc::new(ChatRequest::parse(request.to_string().as_bytes()).unwrap());
        let mut http = http::Request::post("/v1/chat/completions").body(()).unwrap();
        http.extensions_mut().insert(chat);
        let (head, ()) = http.into_parts();
        let quote = quote_of(&catalog, &request);
        format!("{:?}", PromptMeter { catalog: catalog.clone() }.make_meter(&head, &quote))
    };
    let reasoner = meter_of("reasoner", Some(100));
    assert!(reasoner.contains("hidden: Some(40)") && reasoner.contains("max_output: Some(100)"), "{reasoner}");
    // Models that stream all they bill pay nothing ahead of their content.
    let plain = meter_of("plain", None);
    assert!(plain.contains("hidden: Some(0)") && plain.contains("max_output: None"), "{plain}");
}
