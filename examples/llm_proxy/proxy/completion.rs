//! Non-streamed completions, inside the payment layer: the upstream's event stream is read
//! to its end and merged into **one** chunk that carries the whole answer and its `usage`.
//!
//! Why one chunk, read to the end first:
//!
//! - an upstream that fails before `[DONE]` is answered `502` with nothing sent, and the
//!   payment layer charges nothing for a non-2xx answer;
//! - the merged chunk is metered like any streamed chunk, and because it carries its own
//!   `usage`, `OpenAiTokenMeter` counts exactly that usage for it (a chunk's `usage`
//!   covers its own text): the client is charged exactly the usage it is shown;
//! - it is one SSE event, so it goes out whole or not at all: a session short of its
//!   cost pauses *before* any content goes out (see [`unstream`](super::unstream), which
//!   turns the metered event into the `chat.completion` object outside the layer).
//!
//! An upstream that sends no `usage` gets one made of the meter's own bound (the prompt
//! bound, one token per byte of output text), which is what the meter would charge.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use super::chat::ChatRequest;
use super::errors::ApiError;

/// The most a non-streamed answer may hold, in bytes of upstream events.
pub const MAX_COMPLETION_BYTES: usize = 8 << 20;

/// One choice, merged from its deltas.
#[derive(Debug, Default)]
struct Choice {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
    tool_calls: BTreeMap<u64, ToolCall>,
    logprobs: Option<Vec<Value>>,
    finish_reason: Option<Value>,
}

#[derive(Debug, Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// The chunks of one answer, merged.
#[derive(Debug, Default)]
pub struct Merged {
    head: Map<String, Value>,
    choices: BTreeMap<u64, Choice>,
    usage: Option<Value>,
    failure: Option<String>,
}

fn append(slot: &mut Option<String>, text: Option<&str>) {
    if let Some(text) = text {
        slot.get_or_insert_with(String::new).push_str(text);
    }
}

impl Merged {
    /// Adds one event's `data`.
    pub fn add(&mut self, data: &str) {
        if data == "[DONE]" {
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else { return };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error["message"].as_str().unwrap_or("the upstream failed");
            self.failure.get_or_insert_with(|| message.to_owned());
            return;
        }
        for key in ["id", "created", "model", "system_fingerprint", "service_tier"] {
            if let Some(value) = chunk.get(key).filter(|v| !v.is_null()) {
                self.head.entry(key).or_insert_with(|| value.clone());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let Some(index) = choice.get("index").map_or(Some(0), Value::as_u64) else { continue };
            let merged = self.choices.entry(index).or_default();
            let delta = choice.get("delta").or_else(|| choice.get("message")).unwrap_or(&Value::Null);
            if let Some(role) = delta.get("role").and_then(Value::as_str) {
                merged.role.get_or_insert_with(|| role.to_owned());
            }
            append(&mut merged.content, delta.get("content").and_then(Value::as_str));
            append(&mut merged.refusal, delta.get("refusal").and_then(Value::as_str));
            let reasoning = delta.get("reasoning_content").or_else(|| delta.get("reasoning"));
            append(&mut merged.reasoning, reasoning.and_then(Value::as_str));
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let at = call.get("index").and_then(Value::as_u64).unwrap_or(merged.tool_calls.len() as u64);
                let slot = merged.tool_calls.entry(at).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.id.get_or_insert_with(|| id.to_owned());
                }
                if let Some(kind) = call.get("type").and_then(Value::as_str) {
                    slot.kind.get_or_insert_with(|| kind.to_owned());
                }
                let function = call.get("function").unwrap_or(&Value::Null);
                slot.name.push_str(function.get("name").and_then(Value::as_str).unwrap_or(""));
                slot.arguments.push_str(function.get("arguments").and_then(Value::as_str).unwrap_or(""));
            }
            if let Some(content) = choice.get("logprobs").and_then(|l| l.get("content")).and_then(Value::as_array) {
                merged.logprobs.get_or_insert_with(Vec::new).extend(content.iter().cloned());
            }
            if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                merged.finish_reason = Some(reason.clone());
            }
        }
    }

    /// Why the upstream failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Bytes of output text (what the meter bounds output tokens by).
    fn text_bytes(&self) -> u64 {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len) as u64;
        let calls = |c: &Choice| c.tool_calls.values().map(|t| (t.name.len() + t.arguments.len()) as u64).sum::<u64>();
        self.choices.values().map(|c| len(&c.content) + len(&c.refusal) + len(&c.reasoning) + calls(c)).sum()
    }

    /// The one chunk holding it all, with `usage` (the upstream's, else the meter's bound).
    pub fn chunk(&self, prompt_bound: u64) -> Value {
        let usage = self.usage.clone().unwrap_or_else(|| {
            let output = self.text_bytes();
            json!({ "prompt_tokens": prompt_bound, "completion_tokens": output, "total_tokens": prompt_bound + output })
        });
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(index, c)| {
                let mut delta = Map::new();
                delta.insert("role".into(), json!(c.role.as_deref().unwrap_or("assistant")));
                delta.insert("content".into(), json!(c.content));
                delta.insert("refusal".into(), json!(c.refusal));
                if let Some(reasoning) = &c.reasoning {
                    delta.insert("reasoning_content".into(), json!(reasoning));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .iter()
                        .map(|(i, t)| {
                            json!({ "index": i, "id": t.id, "type": t.kind.as_deref().unwrap_or("function"),
                                    "function": { "name": t.name, "arguments": t.arguments } })
                        })
                        .collect();
                    delta.insert("tool_calls".into(), Value::Array(calls));
                }
                let logprobs = c.logprobs.as_ref().map(|content| json!({ "content": content }));
                json!({ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": c.finish_reason })
            })
            .collect();
        let mut chunk = self.head.clone();
        chunk.insert("object".into(), json!("chat.completion.chunk"));
        chunk.insert("choices".into(), Value::Array(choices));
        chunk.insert("usage".into(), usage);
        Value::Object(chunk)
    }
}

/// Splits `buf` into whole SSE events, calling `on` with each event's name (if any) and
/// its joined `data`; the rest (an event cut short) stays in `buf`.
pub fn drain_events(buf: &mut BytesMut, mut on: impl FnMut(Option<&str>, &str)) {
    loop {
        let Some((end, skip)) = boundary(buf) else { return };
        let event = buf.split_to(end + skip);
        let text = String::from_utf8_lossy(&event[..end]);
        let (mut name, mut data) = (None, Vec::new());
        for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim_start().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if !data.is_empty() || name.is_some() {
            on(name.as_deref(), &data.join("\n"));
        }
    }
}

/// Where the first event in `buf` ends, and the length of the blank line ending it.
fn boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Reads a streamed answer to its end and answers the one merged chunk as an event stream
/// (`data: {chunk}`, `data: [DONE]`); an upstream failure before its end is a `502`.
pub async fn gather(response: Response, chat: &ChatRequest) -> Result<Response, ApiError> {
    let (head, mut body) = response.into_parts();
    let (mut buf, mut read, mut merged) = (BytesMut::new(), 0usize, Merged::default());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_gateway(format!("The upstream stream failed: {e}.")))?;
        let Ok(data) = frame.into_data() else { continue };
        read = read.saturating_add(data.len());
        if read > MAX_COMPLETION_BYTES {
            return Err(ApiError::bad_gateway(format!(
                "The completion is over {MAX_COMPLETION_BYTES} bytes: ask for it with `stream: true`."
            )));
        }
        buf.extend_from_slice(&data);
        drain_events(&mut buf, |_, data| merged.add(data));
    }
    if let Some(why) = merged.failure() {
        return Err(ApiError::bad_gateway(format!("The upstream failed before the completion ended: {why}")));
    }
    if merged.choices.is_empty() {
        return Err(ApiError::bad_gateway("The upstream answered no completion."));
    }
    let event = format!("data: {}\n\ndata: [DONE]\n\n", merged.chunk(chat.prompt_tokens));
    let mut response = Response::from_parts(head, Body::from(Bytes::from(event)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    Ok(response)
}

#[cfg(test)]
#[allow(unused_imports)] // the load run's bench builds this module without its tests
mod tests {
    use super::*;

    #[test]
    fn tool_calls_refusals_and_usage_merge_into_one_chunk() {
        let mut merged = Merged::default();
        let mut buf = BytesMut::from(
            concat!(
                "data: {\"id\":\"c1\",\"model\":\"m\",\"created\":5,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",",
                "\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_\",\"arguments\":\"{\\\"a\"}}]}}]}\r\n\r\n",
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"time\",\"arguments\":\"\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"},",
                "{\"index\":1,\"delta\":{\"refusal\":\"No.\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\ndata: [DONE]\n\nda",
            )
            .as_bytes(),
        );
        drain_events(&mut buf, |_, data| merged.add(data));
        assert_eq!(&buf[..], b"da", "a cut event waits");
        let chunk = merged.chunk(100);
        assert_eq!(chunk["id"], "c1");
        let call = &chunk["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!((call["id"].as_str(), call["function"]["name"].as_str()), (Some("call_1"), Some("get_time")));
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert_eq!(chunk["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunk["choices"][0]["delta"]["content"], Value::Null);
        assert_eq!(chunk["choices"][1]["delta"]["refusal"], "No.");
        assert_eq!(chunk["usage"]["completion_tokens"], 9);

        // No `usage` from the upstream: the meter's own bound.
        let mut bare = Merged::default();
        bare.add(r#"{"choices":[{"index":0,"delta":{"content":"abcd"}}]}"#);
        assert_eq!(bare.chunk(7)["usage"], json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}));
        bare.add(r#"{"error":{"message":"gone"}}"#);
        assert_eq!(bare.failure(), Some("gone"));
    }
}
