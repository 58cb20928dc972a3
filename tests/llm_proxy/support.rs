//! Fixtures for the llm_proxy tests: configurations, fake upstreams on 127.0.0.1, a proxy
//! with no chain behind it (for the answers that never reach payment), and expected costs.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tollgate::{Amount, Price, Usage};

use crate::demo::client::{Event, Flow, PayingClient, Streamed};
use crate::proxy::chat::{ChatRequest, estimate_text_tokens};
use crate::proxy::config::Config;
use crate::proxy::payment::PaymentSettings;
use crate::proxy::{Proxy, Running, spawn};

/// A configuration: the simulated model priced $2.50 / $10.00 per 1M (plus 10%), timeouts
/// short, and `extra` TOML (upstreams, models) appended.
pub fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[server]
realm = "llm-proxy.test"
service_fee_percent = 10
upstream_timeout_secs = 5
stream_idle_timeout_secs = 5
provider_cooldown_secs = 60

[payment]
rpc_url = "http://127.0.0.1:9"
chain_id = 4242
escrow = "0x00000000000000000000000000000000e5c70001"
payee_key_env = "LLM_PROXY_TEST_UNSET"
secret_env = "LLM_PROXY_TEST_UNSET"
suggested_deposit = 1.0

[simulated]
model = "tollgate-sim"
input_per_1m = 2.50
output_per_1m = 10.00
tokens_per_second = 0

[demo]
chain_id = 4242
{extra}
"#
    );
    Config::parse(&text).expect("test configuration parses")
}

/// The proxy of `config` with no chain behind it: enough for everything answered before
/// a credential is verified (free routes, 400, 402, 404, 413).
pub async fn offline(config: &Config) -> (Running, Proxy) {
    let settings = PaymentSettings { realm: config.server.realm.clone(), ..settings() };
    let proxy = Proxy::build(config, &settings, false, None).expect("proxy builds");
    let server = spawn(proxy.router.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    (server, proxy)
}

/// Payment settings for a proxy with no chain behind it.
pub fn settings() -> PaymentSettings {
    PaymentSettings {
        rpc_url: "http://127.0.0.1:9".into(),
        chain_id: 4242,
        escrow: crate::demo::devnet::ESCROW,
        currency: tollgate::method::tempo::PATH_USD,
        payee: PrivateKeySigner::random(),
        secret: b"llm-proxy-test-secret-of-32-bytes!!".to_vec(),
        realm: "llm-proxy.test".into(),
        suggested_deposit: Amount::new(1_000_000),
        voucher_window: 256,
        pause_deadline: Duration::from_secs(5),
        keep_alive: Duration::from_secs(15),
        decimals: 6,
        sessions: crate::proxy::payment::Sessions::default(),
        x402: None,
        x402_upto: false,
    }
}

/// A chat request for `model`.
pub fn chat(model: &str, prompt: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] })
}

/// The proxy's prompt estimate for `request`.
pub fn prompt_tokens(request: &Value) -> u64 {
    ChatRequest::parse(request.to_string().as_bytes()).unwrap().prompt_tokens
}

/// What `input` prompt and `output` completion tokens cost at `price`.
pub fn cost(price: &Price, input: u64, output: u64) -> u128 {
    price.cost(Usage { input, output }).unwrap().get()
}

/// The output tokens the meter estimates for the chunks a client received.
pub fn received_output(events: &[Event]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(chunk) => chunk["choices"][0]["delta"]["content"].as_str(),
            _ => None,
        })
        .map(|text| estimate_text_tokens(text.len()))
        .sum()
}

/// The bytes of the content the client received: what a stream that never got a `usage`
/// is charged (the meter counts at most one token per byte).
pub fn received_bytes(events: &[Event]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(chunk) => chunk["choices"][0]["delta"]["content"].as_str(),
            _ => None,
        })
        .map(|text| text.len() as u64)
        .sum()
}

/// Streams `request`, keeping every event.
pub async fn stream_all(client: &mut PayingClient, request: &Value) -> (Streamed, Vec<Event>) {
    let mut events = Vec::new();
    let streamed = client
        .stream(request, |e| {
            events.push(e.clone());
            Flow::Continue
        })
        .await
        .unwrap();
    (streamed, events)
}

/// Posts raw bytes to the chat route; returns the status, headers and JSON body.
pub async fn post_raw(base: &str, body: Vec<u8>) -> (StatusCode, HeaderMap, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::<Bytes>::from(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What a fake upstream does.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Streams `pieces` as chunks, then the finish chunk, the usage chunk and `[DONE]`.
    Stream(Vec<&'static str>),
    /// Streams `pieces`, then drops the connection mid-stream.
    Die(Vec<&'static str>),
    /// Answers this status with an OpenAI error body.
    Status(u16),
}

/// An OpenAI-compatible upstream on 127.0.0.1 that records what it was sent.
pub struct Fake {
    /// Where it listens.
    pub addr: SocketAddr,
    counter: Arc<AtomicUsize>,
    /// Their headers and bodies.
    pub requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.counter.load(Ordering::SeqCst)
    }

    /// Its API root, for `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

#[derive(Clone)]
struct FakeState {
    behaviour: Behaviour,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

/// Starts a fake upstream.
pub async fn fake(behaviour: Behaviour) -> Fake {
    let (hits, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let state = FakeState { behaviour, hits: hits.clone(), requests: requests.clone() };
    let app = Router::new().route("/v1/chat/completions", post(answer)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { addr, counter: hits, requests, task }
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn answer(State(state): State<FakeState>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let (head, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push((head.headers, body));
    let (pieces, tail) = match &state.behaviour {
        Behaviour::Status(status) => {
            let error = json!({"error": {"message": format!("fake upstream says {status}"), "type": "fake"}});
            return Response::builder()
                .status(*status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(error.to_string()))
                .unwrap();
        }
        Behaviour::Stream(pieces) => (pieces.clone(), true),
        Behaviour::Die(pieces) => (pieces.clone(), false),
    };
    let chunk = |choices: Value, usage: Value| {
        let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                           "model": "fake", "choices": choices, "usage": usage});
        Ok(Bytes::from(format!("data: {chunk}\n\n")))
    };
    let mut items: VecDeque<Result<Bytes, std::io::Error>> = pieces
        .iter()
        .map(|p| chunk(json!([{"index": 0, "delta": {"content": p}, "finish_reason": null}]), Value::Null))
        .collect();
    if tail {
        let completion: u64 = pieces.iter().map(|p| estimate_text_tokens(p.len())).sum();
        items.push_back(chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]), Value::Null));
        let usage = json!({"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion});
        items.push_back(chunk(json!([]), usage));
        items.push_back(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    } else {
        items.push_back(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake upstream dies")));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::new(Paced { items, sleep: None }))
        .unwrap()
}

/// Yields its items 10 ms apart.
struct Paced {
    items: VecDeque<Result<Bytes, std::io::Error>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(10))));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(self.items.pop_front().map(|item| item.map(Frame::data)))
    }
}
