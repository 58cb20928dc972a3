//! The axum app: `GET /health`, `GET /metrics`, `GET /v1/models` (free) and
//! `POST /v1/chat/completions` (paid).
//!
//! Layers of the paid route, outermost first:
//!
//! 1. [`payment_errors`]: the payment layer's refusals also get an OpenAI `error` object;
//! 2. [`parse_chat`]: reads the body (413 past the limit), validates it (400) and the
//!    model (404), and puts the [`ChatRequest`] in the request's extensions. These errors
//!    cost nothing: the payment layer never sees the request;
//! 3. the `PaymentLayer` (402; session management on bodiless POSTs; metering);
//! 4. the handler, which streams the upstream's answer (429 / 502 when none serves; the
//!    layer charges nothing for a non-2xx answer).
//!
//! A request without `stream: true` is still streamed from the upstream: the handler reads
//! it to its end and merges it into one metered chunk ([`completion`]), and `parse_chat`,
//! outside the layer, turns the metered stream into one `chat.completion` ([`unstream`]).
//!
//! `GET /v1/models/{id}` describes one model; unknown paths answer `404` and known paths
//! with another method `405`, both as OpenAI `error` objects.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::catalog::Catalog;
use super::chat::ChatRequest;
use super::cost::CostBody;
use super::errors::{ApiError, json_response, payment_errors};
use super::payment::{ChatPricing, PromptMeter};
use super::upstream::Upstreams;
use super::{completion, unstream};
use tollgate::method::Methods;
use tollgate::store::ChannelStore;
use tollgate::{PaymentContext, PaymentLayer};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The models.
    pub catalog: Arc<Catalog>,
    /// Where completions come from.
    pub upstreams: Upstreams,
    /// The request body limit.
    pub max_body_bytes: usize,
}

/// The app. `layer: None` serves completions unpaid (the load run's baseline). Any
/// store and any payment methods do (the proxy's is [`Layer`](super::payment::Layer); tests use a fake one).
pub fn router<M: Methods, St: ChannelStore + Clone>(
    state: AppState,
    layer: Option<PaymentLayer<M, St, ChatPricing, PromptMeter>>,
) -> Router {
    let chat = post(chat_completions);
    let chat = match layer {
        Some(layer) => chat.route_layer(layer),
        None => chat,
    };
    let chat = chat.layer(from_fn_with_state(state.clone(), parse_chat));
    // Installed now, so the series count from the first request on.
    super::prometheus::install();
    Router::new()
        .route("/health", get(|| async { json_response(StatusCode::OK, &json!({ "status": "ok" })) }))
        .route("/metrics", get(super::prometheus::render))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", chat)
        .merge(super::discovery::routes(&state.catalog))
        .fallback(|request: Request| async move { ApiError::unknown_path(request.uri().path()).into_response() })
        .method_not_allowed_fallback(|request: Request| async move {
            ApiError::method_not_allowed(request.method(), request.uri().path()).into_response()
        })
        .layer(map_response(payment_errors))
        .with_state(state)
}

async fn models(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &state.catalog.list())
}

/// `GET /v1/models/{id}` (ids may hold a `/`, as `openai/gpt-4o` does).
async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.catalog.get(&id) {
        Some(model) => json_response(StatusCode::OK, &state.catalog.describe(model)),
        None => ApiError::unknown_model(&id).into_response(),
    }
}

/// Reads and checks a chat request before anyone is asked to pay for it.
async fn parse_chat(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (mut head, body) = request.into_parts();
    let bytes = match Limited::new(body, state.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::too_large(state.max_body_bytes).into_response();
        }
        Err(e) => return ApiError::invalid_request(format!("Could not read the request body: {e}.")).into_response(),
    };
    // No body: a payment-session management request (open, voucher, top-up, close).
    if !bytes.is_empty() {
        let chat = match ChatRequest::parse(&bytes) {
            Ok(chat) => chat,
            Err(error) => return error.into_response(),
        };
        if state.catalog.get(&chat.model).is_none() {
            return ApiError::unknown_model(&chat.model).into_response();
        }
        // A client that did not ask for a stream gets one `chat.completion` object, made
        // here, outside the payment layer, of the metered stream.
        if !chat.stream {
            let model = state.catalog.get(&chat.model).cloned();
            let receipt = unstream::x402_receipt_header(&head.headers);
            head.extensions.insert(Arc::new(chat));
            let response = next.run(Request::from_parts(head, Body::from(bytes))).await;
            return match model {
                Some(model) => unstream::answer(response, &model, &state.catalog, receipt).await,
                None => response,
            };
        }
        head.extensions.insert(Arc::new(chat));
    }
    next.run(Request::from_parts(head, Body::from(bytes))).await
}

async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    // How this completion was paid (the payment layer put it there); absent when the app
    // runs without payment (the load run's baseline).
    let paid = request.extensions().get::<PaymentContext>().cloned();
    if let Some(paid) = &paid {
        eprintln!(
            "completion paid with {}/{} by {} (channel {})",
            paid.method,
            paid.intent,
            paid.payer.as_deref().unwrap_or("an unnamed payer"),
            paid.channel
        );
    }
    let Some(chat) = request.extensions().get::<Arc<ChatRequest>>().cloned() else {
        return ApiError::invalid_request("The request body is empty: send a chat completion request as JSON.")
            .into_response();
    };
    let Some(model) = state.catalog.get(&chat.model).cloned() else {
        return ApiError::unknown_model(&chat.model).into_response();
    };
    let answer = CatchPanic(Box::pin(async move {
        let response = state.upstreams.complete(&model, &chat).await?;
        if chat.stream {
            // The final `usage` chunk gets its cost (a plain answer gets it in `unstream`).
            Ok(response.map(|body| Body::new(CostBody::new(body, model, state.catalog.clone()))))
        } else {
            completion::gather(response, &chat).await
        }
    }));
    match answer.await {
        Ok(Ok(mut response)) => {
            // Tells the client which of its offers it paid with (session or charge).
            if let Some(value) = paid.and_then(|p| format!("{}/{}", p.method, p.intent).parse().ok()) {
                response.headers_mut().insert("x-paid-with", value);
            }
            response
        }
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::internal("The proxy failed while serving this request.").into_response(),
    }
}

/// Turns a panic of the wrapped future into an error, so a bug answers 500 (and is not
/// charged) instead of dropping the connection.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
