//! Issue 8, item 4: the OpenAI surface. `GET /v1/models/{id}` (404 in OpenAI's shape for
//! an unknown id), `GET /v1/models` lists every model sold with its price, unknown paths
//! and methods answer OpenAI `error` objects; and the official `openai` SDK
//! (tests/js/openai_nonstream_client.mjs) retrieves, lists and gets a non-streamed
//! completion with `choices[0].message.content` and `usage`.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

use crate::proxy::chat::ChatRequest;
use crate::proxy::{Proxy, simulated, spawn};
use crate::support::*;

async fn call(url: &str, method: Method) -> (StatusCode, http::HeaderMap, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::builder().method(method).uri(url).body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = client.request(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Two models, from an upstream that is never called here.
fn two_models() -> crate::proxy::config::Config {
    config(
        "[upstreams.a]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nid = \"openai/gpt-4o-mini\"\nowned_by = \"openai\"\n\
         providers = [{ upstream = \"a\", input_per_1m = 0.15, output_per_1m = 0.6 }]\n\
         [[models]]\nid = \"llama\"\nproviders = [{ upstream = \"a\", input_per_1m = 0.1, output_per_1m = 0.2 }]\n",
    )
}

#[tokio::test]
async fn surface_models_retrieve_list_and_unknown_ids() {
    let (server, _proxy) = offline(&two_models()).await;
    let (status, _, list) = call(&server.url("/v1/models"), Method::GET).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openai/gpt-4o-mini", "llama"], "every model sold");
    for model in list["data"].as_array().unwrap() {
        assert!(model["pricing"]["input_per_1m"].is_number() && model["pricing"]["output_per_1m"].is_number());
    }

    // An id with a slash, as OpenRouter-style ids have.
    let (status, headers, model) = call(&server.url("/v1/models/openai/gpt-4o-mini"), Method::GET).await;
    assert_eq!(status, StatusCode::OK, "{model}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(model, list["data"][0], "the same object as in the list");
    assert_eq!(model["object"], "model");
    assert_eq!(model["pricing"]["output_per_1m"].as_f64(), Some(0.66), "fee included");

    let (status, _, error) = call(&server.url("/v1/models/no-such-model"), Method::GET).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn surface_unknown_methods_and_routes_answer_openai_errors() {
    let (server, _proxy) = offline(&config("")).await;
    for (method, path, status) in [
        (Method::GET, "/v1/chat/completions", StatusCode::METHOD_NOT_ALLOWED),
        (Method::PUT, "/v1/chat/completions", StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, "/v1/models", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/models/tollgate-sim", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/embeddings", StatusCode::NOT_FOUND),
        (Method::POST, "/v2/anything", StatusCode::NOT_FOUND),
    ] {
        let (got, headers, body) = call(&server.url(path), method.clone()).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{method} {path}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{method} {path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(path)), "{method} {path}: {body}");
    }
}

const PROMPT: &str = "What does a paid proxy do with my tokens?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surface_the_openai_sdk_retrieves_lists_and_gets_a_non_streamed_completion() {
    // The proxy's OpenAI surface without the payment layer (the paid path of the same
    // answer is tests/llm_proxy/nonstream.rs).
    let router = Proxy::unpaid(&config(""), true, None).unwrap();
    let server = spawn(router, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/openai_nonstream_client.mjs"))
        .env("BASE_URL", server.url("/v1"))
        .env("MODEL", "tollgate-sim")
        .env("PROMPT", PROMPT)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("the client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "openai client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line =
        |kind: &str| lines.iter().find(|l| l["kind"] == kind).unwrap_or_else(|| panic!("no {kind} line: {stdout}"));

    assert_eq!(line("models")["ids"], serde_json::json!(["tollgate-sim"]));
    assert_eq!(line("retrieve")["model"]["id"], "tollgate-sim");
    let missing = line("retrieve_missing");
    assert_eq!((missing["status"].as_u64(), missing["name"].as_str()), (Some(404), Some("NotFoundError")));

    let expected =
        simulated::completion(&ChatRequest::parse(chat("tollgate-sim", PROMPT).to_string().as_bytes()).unwrap());
    let completion = line("completion");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["content"], expected.text, "choices[0].message.content");
    assert_eq!(completion["usage"]["prompt_tokens"], expected.prompt_tokens);
    assert_eq!(completion["usage"]["completion_tokens"], expected.completion_tokens);
    assert!(completion["usage"]["cost"].as_f64().is_some_and(|c| c > 0.0), "{completion}");

    let wrong = line("wrong_method");
    assert_eq!((wrong["status"].as_u64(), wrong["type"].as_str()), (Some(405), Some("invalid_request_error")));
}
