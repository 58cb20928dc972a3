//! Non-streamed completions, outside the payment layer: the metered event stream (one
//! merged chunk, see [`completion`](super::completion), then the layer's own events)
//! becomes OpenAI's `chat.completion` object, with its `usage` and what it cost
//! (`usage.cost` in dollars, as OpenRouter reports it, `usage.cost_base_units`, and an
//! `x-cost` header; see [`cost`](super::cost)).
//!
//! The stream is read to its end first, so the payment is settled (the layer's
//! `payment-receipt` event) before the client gets the object. A client that did not ask
//! for a stream cannot answer a `payment-need-voucher` (it reads JSON), so one is not
//! waited for: the stream is dropped at once (the merged chunk had not gone out, so only
//! what was delivered before, the prompt the proxy bought, is charged) and the client gets
//! a `402` `budget_exceeded` error saying how to pay. A request that names its output cap
//! is checked for the whole cap before the upstream is called and never gets that far.
//!
//! An x402 payment's receipt (the stream's last event, the x402 `SettleResponse`) goes back
//! in the header x402 clients read: `PAYMENT-RESPONSE` for a `PAYMENT-SIGNATURE` payment,
//! `X-PAYMENT-RESPONSE` for an `X-PAYMENT` one. A settlement that failed is a `402`: the
//! client gets no completion it did not pay for.

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::catalog::{Catalog, Model};
use super::completion::{MAX_COMPLETION_BYTES, drain_events};
use super::errors::{ApiError, json_response};
use tollgate::wire::x402::{PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE, encode_header};

/// The header an x402 receipt goes back in, if the request pays with x402.
pub fn x402_receipt_header(request: &HeaderMap) -> Option<HeaderName> {
    if request.contains_key(PAYMENT_SIGNATURE) {
        Some(PAYMENT_RESPONSE)
    } else if request.contains_key(X_PAYMENT) {
        Some(X_PAYMENT_RESPONSE)
    } else {
        None
    }
}

/// What the metered stream said.
#[derive(Default)]
struct Seen {
    chunk: Option<Value>,
    need_voucher: Option<Value>,
    payment_error: Option<Value>,
    receipt: Option<Value>,
    cut_off: bool,
}

/// Answers a non-streamed request: a 2xx event stream becomes one `chat.completion`;
/// anything else (errors, 402 challenges, management answers) passes as it is.
pub async fn answer(response: Response, model: &Model, catalog: &Catalog, x402: Option<HeaderName>) -> Response {
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !response.status().is_success() || !streams {
        return response;
    }
    let (mut head, mut body) = response.into_parts();
    let (mut buf, mut read, mut seen) = (BytesMut::new(), 0usize, Seen::default());
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else { continue };
        read = read.saturating_add(data.len());
        if read > 2 * MAX_COMPLETION_BYTES {
            break;
        }
        buf.extend_from_slice(&data);
        drain_events(&mut buf, |name, data| seen.add(name, data));
        if seen.need_voucher.is_some() || seen.payment_error.is_some() {
            break;
        }
    }
    // Dropping the body here ends the metered stream: it is charged what went out.
    drop(body);
    if seen.chunk.is_none() && (seen.need_voucher.is_some() || seen.cut_off) {
        return short_of_headroom(&seen.need_voucher.unwrap_or(Value::Null)).into_response();
    }
    if let Some(problem) = seen.payment_error {
        let detail = problem["detail"].as_str().unwrap_or("the payment failed").to_owned();
        return ApiError::payment(StatusCode::PAYMENT_REQUIRED, "payment_error", detail).into_response();
    }
    // An x402 receipt: a payment that did not settle delivers nothing.
    let x402 = x402.zip(seen.receipt.filter(|r| r.get("network").is_some()));
    if let Some((name, receipt)) = &x402 {
        if receipt["extensions"]["status"] == "failed" {
            let mut refused =
                ApiError::payment(StatusCode::PAYMENT_REQUIRED, "payment_error", "The payment did not settle.")
                    .into_response();
            refused.headers_mut().insert(name.clone(), encode_header(receipt));
            return refused;
        }
    }
    let Some(chunk) = seen.chunk else {
        return ApiError::bad_gateway("The completion ended before its content was delivered.").into_response();
    };
    let (completion, cost) = completion(chunk, model, catalog, seen.cut_off);
    let mut response = json_response(StatusCode::OK, &completion);
    for (name, value) in response.headers() {
        head.headers.insert(name.clone(), value.clone());
    }
    head.headers.remove(header::CACHE_CONTROL);
    head.headers.remove(header::CONTENT_LENGTH);
    if let Ok(value) = HeaderValue::from_str(&cost) {
        head.headers.insert("x-cost", value);
    }
    if let Some((name, receipt)) = x402 {
        head.headers.insert(name, encode_header(&receipt));
    }
    *response.headers_mut() = head.headers;
    response
}

impl Seen {
    fn add(&mut self, name: Option<&str>, data: &str) {
        let value = || serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
        match name {
            Some("payment-need-voucher") => self.need_voucher = Some(value()),
            Some("payment-error") => self.payment_error = Some(value()),
            Some("payment-receipt") => self.receipt = Some(value()),
            Some(_) => {}
            None if data == "[DONE]" => {}
            None => {
                let chunk = value();
                if self.chunk.is_some() {
                    // Only the layer's cut-off chunk can follow the merged one.
                    self.cut_off |= chunk["choices"][0]["finish_reason"] == "length";
                } else if chunk["choices"].as_array().is_some_and(|c| !c.is_empty()) && chunk.get("usage").is_some() {
                    self.chunk = Some(chunk);
                } else {
                    self.cut_off = true;
                }
            }
        }
    }
}

/// The `chat.completion` object of the merged chunk, and its cost in dollars.
fn completion(mut chunk: Value, model: &Model, catalog: &Catalog, cut_off: bool) -> (Value, String) {
    if let Some(choices) = chunk["choices"].as_array_mut() {
        for choice in choices.iter_mut().filter(|c| c.is_object()) {
            if let Some(delta) = choice.as_object_mut().and_then(|c| c.remove("delta")) {
                choice["message"] = delta;
            }
            if cut_off || choice["finish_reason"].is_null() {
                choice["finish_reason"] = json!(if cut_off { "length" } else { "stop" });
            }
        }
    }
    chunk["object"] = json!("chat.completion");
    let dollars = match chunk["usage"].as_object_mut() {
        Some(usage) => super::cost::annotate(usage, model, catalog),
        None => 0.0,
    };
    (chunk, super::payment::dollars(dollars))
}

/// `402` for a session whose headroom does not cover the completion.
fn short_of_headroom(need: &Value) -> ApiError {
    let field = |key: &str| need[key].as_str().unwrap_or("?").to_owned();
    ApiError::payment(
        StatusCode::PAYMENT_REQUIRED,
        "budget_exceeded",
        format!(
            "This channel's headroom does not cover the completion (it needs a voucher for {} cumulative; {} is \
             accepted). A non-streamed request is paid from headroom the channel already holds: sign a voucher for \
             it first, set `max_completion_tokens` so the whole price is checked before the model is called, or ask \
             with `stream: true` to pay as it streams.",
            field("requiredCumulative"),
            field("acceptedCumulative"),
        ),
    )
}
