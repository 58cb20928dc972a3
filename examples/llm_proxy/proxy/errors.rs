//! OpenAI-style errors: `{"error": {"message", "type", "code"}}` with the status of
//! paypertoken's table, and the rewrite of the payment layer's own refusals.
//!
//! | status | type | when |
//! |---|---|---|
//! | 400 | `invalid_request_error` | invalid JSON, schema failure, an upstream's 400 |
//! | 402 | `payment_error` / `budget_exceeded` | no or bad credential, channel short of funds |
//! | 404 | `invalid_request_error` | unknown model or path |
//! | 405 | `invalid_request_error` | a known path with another method (`GET /v1/chat/completions`) |
//! | 413 | `invalid_request_error` | body over the limit (1 MiB) |
//! | 429 | `upstream_error` | every provider rate-limited the request |
//! | 500 | `server_error` | a bug in the proxy |
//! | 502 | `upstream_error` | no provider answered |

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tollgate::{PaymentError, PaymentErrorKind};

/// An error answered in OpenAI's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.message`.
    pub message: String,
    /// `error.code`, when there is one.
    pub code: Option<&'static str>,
    /// `error.param`, when one field is to blame.
    pub param: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), code: None, param: None }
    }

    /// 400: the request is not what the API takes.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 blaming `param`.
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        ApiError { param: Some(param), ..ApiError::invalid_request(message) }
    }

    /// 404: no such model.
    pub fn unknown_model(model: &str) -> Self {
        ApiError {
            code: Some("model_not_found"),
            param: Some("model"),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{model}` does not exist; GET /v1/models lists the models sold here."),
            )
        }
    }

    /// 404: no such path.
    pub fn unknown_path(path: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("Unknown path {path}."))
    }

    /// 405: the path exists, not with this method.
    pub fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        ApiError {
            code: Some("method_not_allowed"),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                format!("{method} is not allowed on {path}."),
            )
        }
    }

    /// A payment refusal answered in the proxy's own words (a non-streamed completion its
    /// channel cannot cover): `kind` is `budget_exceeded` or `payment_error`.
    pub fn payment(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        let code = if kind == "budget_exceeded" { "insufficient_balance" } else { "payment_failed" };
        ApiError { code: Some(code), ..ApiError::new(status, kind, message) }
    }

    /// 413: the body is over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("The request body exceeds {limit} bytes."),
            )
        }
    }

    /// 429: every provider is rate limiting.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("upstream_rate_limited"),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "upstream_error", message)
        }
    }

    /// 502: no provider answered.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("upstream_unavailable"),
            ..ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
        }
    }

    /// 500: the proxy failed.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The `{"error": {...}}` object.
    pub fn body(&self) -> Value {
        let mut error = json!({ "message": self.message, "type": self.kind, "param": self.param, "code": self.code });
        if self.param.is_none() {
            error.as_object_mut().map(|e| e.remove("param"));
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The `error.type` of a payment refusal.
fn payment_kind(kind: PaymentErrorKind) -> &'static str {
    match kind {
        PaymentErrorKind::InsufficientBalance | PaymentErrorKind::AmountExceedsDeposit => "budget_exceeded",
        PaymentErrorKind::Unpriced | PaymentErrorKind::Unavailable => "server_error",
        PaymentErrorKind::PayloadTooLarge => "invalid_request_error",
        _ => "payment_error",
    }
}

/// Gives the payment layer's refusals (found by the [`PaymentError`] in their extensions) an
/// OpenAI `error` object too. The problem+json members stay, and so do the challenges in
/// `WWW-Authenticate`: MPP clients read those, OpenAI SDKs read `error`.
pub async fn payment_errors(response: Response) -> Response {
    let Some(error) = response.extensions().get::<PaymentError>().cloned() else { return response };
    let (mut head, body) = response.into_parts();
    let mut problem = match axum::body::to_bytes(body, 64 << 10).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| json!({})),
        Err(_) => json!({}),
    };
    let code = error.kind().problem_type();
    let openai = json!({ "message": error.detail(), "type": payment_kind(error.kind()), "code": code });
    if let Some(problem) = problem.as_object_mut() {
        problem.insert("error".into(), openai);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, Body::from(problem.to_string()))
}
