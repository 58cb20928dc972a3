//! Paid flows through the proxy: failover, what travels upstream, an upstream dying
//! mid-stream, a client hanging up mid-stream, and the demo itself.

use std::time::Duration;

use http::{StatusCode, header};
use serde_json::{Value, json};
use tollgate::Amount;

use crate::demo::client::{Event, Flow};
use crate::demo::stack::{Options, Stack};
use crate::proxy::chat::ChatRequest;
use crate::proxy::config::Config;
use crate::proxy::simulated::{self, Simulator};
use crate::support::*;

fn options(simulated: bool) -> Options {
    Options {
        simulated,
        simulator: None,
        voucher_window: 256,
        pause_deadline: Duration::from_secs(10),
        keep_alive: Duration::from_secs(15),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cheapest_healthy_provider_serves_and_failing_ones_are_skipped_before_any_byte() {
    let good = fake(Behaviour::Stream(vec!["Served", " by", " the", " dearest"])).await;
    let failing = fake(Behaviour::Status(500)).await;
    let refused = format!("http://{}/v1", closed_port().await);
    let extra = format!(
        r#"
[upstreams.refused]
base_url = "{refused}"
[upstreams.failing]
base_url = "{}"
[upstreams.good]
base_url = "{}"
[[models]]
id = "m"
providers = [{{ upstream = "good", input_per_1m = 5.0, output_per_1m = 5.0 }},
             {{ upstream = "failing", input_per_1m = 2.0, output_per_1m = 2.0 }},
             {{ upstream = "refused", input_per_1m = 1.0, output_per_1m = 1.0 }}]
"#,
        failing.base_url(),
        good.base_url()
    );
    let stack = Stack::start(&config(&extra), options(false)).await.unwrap();
    let model = stack.proxy.catalog.get("m").unwrap().clone();
    let names: Vec<&str> = model.providers.iter().map(|p| p.upstream.name.as_str()).collect();
    assert_eq!(names, ["refused", "failing", "good"], "cheapest first");
    let request = chat("m", "hello");
    let mut client = stack.client(2);
    stack.open(&mut client, &request, 100_000).await.unwrap();

    let (first, events) = stream_all(&mut client, &request).await;
    assert_eq!((first.status, first.text.as_str()), (StatusCode::OK, "Served by the dearest"));
    assert_eq!((failing.hits(), good.hits()), (1, 1), "the refused and failing providers were tried first");
    // Both failed providers are cooling down now: the next request goes straight to the good one.
    let (second, _) = stream_all(&mut client, &request).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!((failing.hits(), good.hits()), (1, 2));
    // Clients pay the model's listed price (the cheapest provider's plus the fee), reconciled
    // to the usage the upstream reported (7 prompt tokens, the pieces' tokens).
    let each = cost(&model.price, 7, received_output(&events));
    assert_eq!(second.receipt.unwrap()["spent"], (2 * each).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_travels_upstream_with_stream_and_usage_forced() {
    let upstream = fake(Behaviour::Stream(vec!["ok"])).await;
    let extra = format!(
        r#"
[upstreams.u]
base_url = "{}"
api_key_env = "CARGO_PKG_NAME"
[[models]]
id = "gpt-4o-mini"
providers = [{{ upstream = "u", model = "vendor/gpt-4o-mini", input_per_1m = 0.15, output_per_1m = 0.6 }}]
"#,
        upstream.base_url()
    );
    let stack = Stack::start(&config(&extra), options(false)).await.unwrap();
    let table = json!({
        "temperature": 0.5, "max_tokens": 50, "top_p": 0.9, "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "stop": ["\n\n"], "n": 1, "tool_choice": "auto",
        "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}],
    });
    let mut request = chat("gpt-4o-mini", "What time is it?");
    request.as_object_mut().unwrap().extend(table.as_object().unwrap().clone());
    // Non-streamed requests get one JSON object (tests/llm_proxy/nonstream.rs); this one streams.
    let extras =
        json!({"stream": true, "stream_options": {"include_usage": false}, "logprobs": true, "user": "u-1", "seed": 7});
    request.as_object_mut().unwrap().extend(extras.as_object().unwrap().clone());
    let mut client = stack.client(2);
    stack.open(&mut client, &request, 100_000).await.unwrap();
    let (streamed, _) = stream_all(&mut client, &request).await;
    assert_eq!((streamed.status, streamed.text.as_str()), (StatusCode::OK, "ok"));

    let (headers, body) = upstream.requests.lock().unwrap()[0].clone();
    let key = std::env::var("CARGO_PKG_NAME").unwrap();
    assert_eq!(headers[header::AUTHORIZATION], format!("Bearer {key}").as_str());
    assert_eq!(headers[header::ACCEPT], "text/event-stream");
    let mut expected = request.as_object().unwrap().clone();
    expected.insert("model".into(), json!("vendor/gpt-4o-mini"));
    expected.insert("stream".into(), json!(true));
    expected.insert("stream_options".into(), json!({"include_usage": true}));
    assert_eq!(body, Value::Object(expected), "every field (issue 8), model mapped, stream and usage forced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_dies_mid_stream_is_charged_only_for_the_delivered_tokens() {
    let dying = fake(Behaviour::Die(vec!["One", " two", " three", " four", " five", " six"])).await;
    let extra = format!(
        "[upstreams.dying]\nbase_url = \"{}\"\n[[models]]\nid = \"m\"\nproviders = [{{ upstream = \"dying\", input_per_1m = 2.5, output_per_1m = 10.0 }}]\n",
        dying.base_url()
    );
    let stack = Stack::start(&config(&extra), options(false)).await.unwrap();
    let price = stack.proxy.catalog.get("m").unwrap().price.clone();
    let payee_before = stack.devnet.balance(stack.payee.address()).await.unwrap();
    let request = chat("m", "Count to ten, please.");
    let mut client = stack.client(2);
    stack.open(&mut client, &request, 100_000).await.unwrap();

    let (streamed, events) = stream_all(&mut client, &request).await;
    assert_eq!((streamed.status, streamed.text.as_str()), (StatusCode::OK, "One two three four five six"));
    let error = streamed.error.expect("an error frame ends the cut stream");
    assert_eq!(error["error"]["type"], "upstream_error");
    let after_error: Vec<&Event> = events.iter().skip_while(|e| !matches!(e, Event::Error(_))).collect();
    assert!(matches!(after_error[1], Event::Done), "then data: [DONE]");
    assert!(matches!(after_error[2], Event::Receipt(_)), "then the payment receipt");
    assert!(streamed.usage.is_none(), "the upstream never reported usage");

    // The estimated prompt plus the delivered text, nothing more: with no usage reported,
    // at its upper bound of one token per byte.
    let expected = cost(&price, prompt_tokens(&request), received_bytes(&events));
    assert_eq!(streamed.receipt.unwrap()["spent"], expected.to_string());
    let state = stack.state(client.channel().unwrap()).await.unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(expected), Amount::ZERO));
    client.close(expected).await.unwrap();
    let gain = stack.devnet.balance(stack.payee.address()).await.unwrap() - payee_before;
    assert_eq!(gain, expected, "the payee got exactly the delivered tokens' price");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_is_charged_only_for_what_it_received() {
    let options = Options {
        simulator: Some(Simulator { delay: Duration::from_millis(5), fault: None }),
        voucher_window: 8,
        keep_alive: Duration::from_millis(100),
        pause_deadline: Duration::from_secs(30),
        ..options(true)
    };
    let stack = Stack::start(&config(""), options).await.unwrap();
    let price = stack.proxy.catalog.get("tollgate-sim").unwrap().price.clone();
    let request = chat("tollgate-sim", "Tell me everything.");
    let mut client = stack.client(2);
    stack.open(&mut client, &request, 100_000).await.unwrap();

    let (mut events, mut pauses) = (Vec::new(), 0);
    let streamed = client
        .stream(&request, |event| {
            events.push(event.clone());
            pauses += matches!(event, Event::NeedVoucher { .. }) as usize;
            // Hang up at the third pause (the first pays for the prompt).
            if pauses == 3 { Flow::Disconnect } else { Flow::Continue }
        })
        .await
        .unwrap();
    assert!(streamed.receipt.is_none(), "the client left before the end");
    let received = received_output(&events);
    let full = simulated::completion(&ChatRequest::parse(request.to_string().as_bytes()).unwrap());
    assert!(received > 0 && received < full.completion_tokens, "received {received} of {}", full.completion_tokens);

    // The server notices at its next keep-alive and releases the stream's reservation.
    let channel = client.channel().unwrap();
    let mut state = stack.state(channel).await.unwrap();
    for _ in 0..100 {
        if state.reserved.is_zero() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = stack.state(channel).await.unwrap();
    }
    let prompt = prompt_tokens(&request);
    assert_eq!(state.reserved, Amount::ZERO, "released");
    // No usage came: the text is charged at its upper bound of one token per byte.
    let bound = received_bytes(&events);
    assert_eq!(state.spent, Amount::new(cost(&price, prompt, bound)), "charged exactly what it received");
    assert_eq!(state.units, prompt + bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_and_the_payee_gains_exactly_the_priced_usage() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/llm_proxy.toml");
    let config = Config::load(std::path::Path::new(path)).unwrap();
    let outcome = crate::demo::run(&config, false).await.unwrap();
    assert!(outcome.text.starts_with("This is tollgate's simulated model"), "{}", outcome.text);
    assert_eq!(Some(outcome.payee_gain), crate::demo::usage_cost(&outcome.price, &outcome.usage));
    assert_eq!(outcome.spent, outcome.payee_gain);
    assert!(outcome.payer_loss > outcome.spent, "the payer also paid its transactions' fees");
    assert!(outcome.vouchers >= 5, "a 16-token window over ~100 tokens: {} vouchers", outcome.vouchers);
}
