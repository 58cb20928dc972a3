//! `POST /v1/chat/completions` requests: validation, the prompt-token bound, and the
//! body sent upstream.
//!
//! The client's JSON object travels upstream as it came, every field of it (documented
//! ones such as `max_completion_tokens`, `response_format`, `seed`, `user`, `logprobs`,
//! `parallel_tool_calls`, `reasoning_effort`, and any the API adds later): the proxy only
//! checks the fields it reads and overrides what it must. `model` becomes the provider's id
//! for it; `stream` is always on, with `stream_options.include_usage` (the client's other
//! `stream_options` kept), so the metering body sees every token and the final `usage`.
//! Whether the client asked for a stream is kept in [`ChatRequest::stream`]: a client that
//! did not gets one `chat.completion` object (see [`completion`](super::completion)).
//!
//! The output cap (`max_completion_tokens`, else the older `max_tokens`) is the price cap:
//! see [`Model::quote`](super::catalog::Model::quote).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::errors::ApiError;

/// Fields checked before they pass (the others pass unchecked: the upstream judges them).
const CHECKED: [&str; 12] = [
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "tools",
    "tool_choice",
    "n",
    "stream",
    "stream_options",
];

/// Roles a message may have.
const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// Prompt tokens a message costs beyond its text, and the reply's priming, as OpenAI counts them.
const PER_MESSAGE: u64 = 4;
const PRIMING: u64 = 3;
/// The most an image part can count: OpenAI's high-detail price for the largest image
/// (85 + 170 per 512-pixel tile, at most 8 tiles once scaled to 2048 × 768).
const PER_IMAGE: u64 = 85 + 170 * 8;

/// A validated chat-completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The model asked for.
    pub model: String,
    /// An upper bound of the prompt tokens (see [`prompt_token_bound`]): what the client pays
    /// before the upstream is called, lowered to the upstream's `usage` when it comes.
    pub prompt_tokens: u64,
    /// Completions asked for.
    pub n: u64,
    /// The output cap per choice, if any: `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Whether the client asked for a stream (`stream: true`).
    pub stream: bool,
    /// The client's object without `model` and `stream`, its known fields checked.
    fields: Map<String, Value>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_request(format!("The request body is not valid JSON: {e}.")))?;
        let Value::Object(mut object) = value else {
            return Err(ApiError::invalid_request("The request body must be a JSON object."));
        };
        let model = match object.remove("model") {
            Some(Value::String(model)) if !model.is_empty() => model,
            Some(_) => return Err(ApiError::invalid_param("model", "`model` must be a non-empty string.")),
            None => return Err(ApiError::invalid_param("model", "`model` is required.")),
        };
        let messages =
            object.remove("messages").ok_or_else(|| ApiError::invalid_param("messages", "`messages` is required."))?;
        check_messages(&messages)?;
        // A null is as good as absent (the SDKs send some), and must not reach the checks.
        object.retain(|_, value| !value.is_null());
        for name in CHECKED {
            if let Some(value) = object.get(name) {
                check_field(name, value)?;
            }
        }
        let stream = object.remove("stream").and_then(|v| v.as_bool()).unwrap_or(false);
        let prompt_tokens = prompt_token_bound(&messages, object.get("tools"));
        object.insert("messages".into(), messages);
        let n = object.get("n").and_then(Value::as_u64).unwrap_or(1);
        let max_tokens = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| object.get(*k)?.as_u64());
        Ok(ChatRequest { model, prompt_tokens, n, max_tokens, stream, fields: object })
    }

    /// The messages.
    pub fn messages(&self) -> &[Value] {
        self.fields["messages"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The output cap of the whole response: the per-choice cap times the choices.
    pub fn output_cap(&self) -> Option<u64> {
        self.max_tokens.map(|cap| cap.saturating_mul(self.n))
    }

    /// The body for an upstream that calls the model `upstream_model`: the client's
    /// object with `model`, `stream` and `stream_options.include_usage` overridden.
    pub fn upstream_body(&self, upstream_model: &str) -> Bytes {
        let mut body = Map::with_capacity(self.fields.len() + 3);
        body.insert("model".into(), Value::String(upstream_model.to_owned()));
        body.extend(self.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        body.insert("stream".into(), Value::Bool(true));
        let mut options = match body.remove("stream_options") {
            Some(Value::Object(options)) => options,
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        body.insert("stream_options".into(), Value::Object(options));
        Bytes::from(Value::Object(body).to_string())
    }
}

fn check_messages(messages: &Value) -> Result<(), ApiError> {
    let bad = |message: String| ApiError::invalid_param("messages", message);
    let Some(list) = messages.as_array().filter(|list| !list.is_empty()) else {
        return Err(bad("`messages` must be a non-empty array.".into()));
    };
    for (i, message) in list.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !role.is_some_and(|role| ROLES.contains(&role)) {
            return Err(bad(format!("`messages[{i}].role` must be one of {}.", ROLES.join(", "))));
        }
        match message.get("content") {
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => return Err(bad(format!("`messages[{i}].content` must be a string or an array of parts."))),
        }
    }
    Ok(())
}

fn check_field(name: &'static str, value: &Value) -> Result<(), ApiError> {
    let number_in = |low: f64, high: f64| value.as_f64().is_some_and(|x| (low..=high).contains(&x));
    let ok = match name {
        "temperature" => number_in(0.0, 2.0),
        "top_p" => number_in(0.0, 1.0),
        "frequency_penalty" | "presence_penalty" => number_in(-2.0, 2.0),
        "max_tokens" | "max_completion_tokens" => value.as_u64().is_some_and(|n| n > 0),
        "stream" => value.is_boolean(),
        "stream_options" => value.is_object(),
        "n" => value.as_u64().is_some_and(|n| (1..=16).contains(&n)),
        "stop" => match value {
            Value::String(_) => true,
            Value::Array(stops) => stops.len() <= 4 && stops.iter().all(Value::is_string),
            _ => false,
        },
        "tools" => value.as_array().is_some_and(|tools| tools.iter().all(Value::is_object)),
        "tool_choice" => value.is_string() || value.is_object(),
        _ => true,
    };
    if ok { Ok(()) } else { Err(ApiError::invalid_param(name, format!("`{name}` has an invalid value: {value}."))) }
}

/// Tokens in `bytes` of text: a quarter of the bytes, at least one for any text. The
/// proxy's meter (`OpenAiTokenMeter`) estimates streamed output the same way.
pub fn estimate_text_tokens(bytes: usize) -> u64 {
    if bytes == 0 { 0 } else { (bytes as u64 / 4).max(1) }
}

/// At most how many tokens the prompt counts, without a tokenizer: one token per byte of
/// every message's text, name and tool calls, OpenAI's per-message overhead, the tool
/// definitions as JSON, and the largest image price per image.
///
/// Why bytes bound tokens: the tokenizers of OpenAI-compatible models (byte-level BPE, or
/// SentencePiece with byte fallback) never make a token of less than one byte. Real
/// prompts count about a quarter of that; the upstream's `usage` brings the charge down
/// at the end of the stream. The client pays this bound before the upstream is called,
/// so a prompt the proxy buys is always paid for, however the client behaves after.
pub fn prompt_token_bound(messages: &Value, tools: Option<&Value>) -> u64 {
    let bytes = |n: usize| n as u64;
    let mut tokens = PRIMING;
    for message in messages.as_array().into_iter().flatten() {
        tokens += PER_MESSAGE;
        tokens += match message.get("content") {
            Some(Value::String(text)) => bytes(text.len()),
            Some(Value::Array(parts)) => parts.iter().map(part_tokens).sum(),
            _ => 0,
        };
        if let Some(Value::String(name)) = message.get("name") {
            tokens += bytes(name.len());
        }
        if let Some(calls) = message.get("tool_calls") {
            tokens += bytes(calls.to_string().len());
        }
    }
    tokens.saturating_add(tools.map_or(0, |tools| bytes(tools.to_string().len())))
}

fn part_tokens(part: &Value) -> u64 {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => part.get("text").and_then(Value::as_str).map_or(0, str::len) as u64,
        Some("image_url") => PER_IMAGE,
        _ => part.to_string().len() as u64,
    }
}
