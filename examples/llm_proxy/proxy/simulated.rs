//! The built-in **simulated** model, served when no upstream is configured, so the proxy
//! runs without an API key. It is not a language model: its reply is a fixed text around
//! the question, streamed as OpenAI chat-completion chunks with a real final `usage` chunk.
//!
//! Its completion tokens follow the proxy's estimate (a quarter of the bytes, at least one
//! per piece of text) and its prompt tokens are the proxy's prompt bound, so the usage it
//! reports is exactly what the meter counted, and the payee's gain can be checked to the
//! base unit.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body::Frame;
use serde_json::{Value, json};
use tokio::time::Sleep;

use super::chat::{ChatRequest, estimate_text_tokens};

/// A failure the simulator can be told to have, for tests of the proxy's error paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panic while answering (a bug in the proxy, as far as the client can tell).
    Panic,
}

/// The simulated upstream.
#[derive(Clone, Debug, Default)]
pub struct Simulator {
    /// The pause before each content chunk.
    pub delay: Duration,
    /// A failure to simulate (tests only).
    pub fault: Option<Fault>,
}

/// What the simulator answers a request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The text of each choice.
    pub text: String,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` (all choices).
    pub completion_tokens: u64,
    /// `stop`, or `length` when `max_tokens` cut it.
    pub finish_reason: &'static str,
}

impl Simulator {
    /// A simulator streaming `tokens_per_second` content chunks (0: no pause).
    pub fn new(tokens_per_second: f64) -> Self {
        let delay =
            if tokens_per_second > 0.0 { Duration::from_secs_f64(1.0 / tokens_per_second) } else { Duration::ZERO };
        Simulator { delay, fault: None }
    }

    /// The streamed answer to `chat`, as model `model`.
    pub fn respond(&self, model: &str, chat: &ChatRequest) -> Response {
        if self.fault == Some(Fault::Panic) {
            panic!("simulated fault: the simulator panics");
        }
        let frames = frames(model, chat);
        let body = SimulatedBody { frames: frames.into(), delay: self.delay, sleep: None };
        let mut response = Response::new(Body::new(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-simulated-model", HeaderValue::from_static("true"));
        response
    }
}

/// What the simulator says to `chat`.
pub fn completion(chat: &ChatRequest) -> Completion {
    let (pieces, finish_reason) = pieces(chat);
    let tokens: u64 = pieces.iter().map(|p| estimate_text_tokens(p.len())).sum();
    Completion {
        text: pieces.concat(),
        prompt_tokens: chat.prompt_tokens,
        completion_tokens: tokens * chat.n,
        finish_reason,
    }
}

/// The reply, cut into the pieces streamed one per chunk, and the finish reason.
fn pieces(chat: &ChatRequest) -> (Vec<String>, &'static str) {
    let asked = chat
        .messages()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("nothing in words");
    let asked: String = asked.split_whitespace().take(12).collect::<Vec<_>>().join(" ");
    let text = format!(
        "This is tollgate's simulated model, not a real one: no upstream provider is configured, so the proxy \
         answers by itself. You asked: \"{asked}\". Every token of this reply is metered as it streams and priced \
         per token. When the paid headroom runs out, the stream pauses until your client signs the next voucher \
         on its Tempo payment channel, then it carries on. The last chunk reports the usage, and the payment \
         receipt follows it."
    );
    let mut pieces = Vec::new();
    let (mut used, cap) = (0, chat.max_tokens.unwrap_or(u64::MAX));
    for (i, word) in text.split(' ').enumerate() {
        let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
        used += estimate_text_tokens(piece.len());
        if used > cap {
            return (pieces, "length");
        }
        pieces.push(piece);
    }
    (pieces, "stop")
}

/// The SSE frames: a role chunk, one chunk per piece and choice, the finish chunk, the
/// usage chunk, `[DONE]`. The bool marks content frames (paced).
fn frames(model: &str, chat: &ChatRequest) -> Vec<(Bytes, bool)> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = format!("chatcmpl-sim-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let chunk = |choices: Value, usage: Value| {
        let chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "tollgate-simulated", "choices": choices, "usage": usage,
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let choices = 0..chat.n;
    let (pieces, finish) = pieces(chat);
    let done = completion(chat);
    let mut frames = Vec::with_capacity(pieces.len() * chat.n as usize + 4);
    let role: Vec<Value> = choices
        .clone()
        .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))
        .collect();
    frames.push((chunk(Value::Array(role), Value::Null), false));
    for piece in &pieces {
        for i in choices.clone() {
            let choice = json!([{"index": i, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]);
            frames.push((chunk(choice, Value::Null), true));
        }
    }
    let end: Vec<Value> =
        choices.map(|i| json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": finish})).collect();
    frames.push((chunk(Value::Array(end), Value::Null), false));
    let usage = json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    });
    frames.push((chunk(json!([]), usage), false));
    frames.push((Bytes::from_static(b"data: [DONE]\n\n"), false));
    frames
}

/// The simulated stream, paced.
struct SimulatedBody {
    frames: VecDeque<(Bytes, bool)>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for SimulatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some((_, paced)) = this.frames.front() else { return Poll::Ready(None) };
        if *paced && !this.delay.is_zero() {
            let delay = this.delay;
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let (frame, _) = this.frames.pop_front().expect("a frame is there");
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}
