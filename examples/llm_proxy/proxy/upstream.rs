//! Forwarding a chat completion upstream with a hyper client, streaming the answer back.
//!
//! Providers are tried cheapest healthy first. A provider that refuses the connection,
//! answers 5xx (or 429, or a non-stream), or fails before its first streamed byte is marked
//! down for its cool-down and the next one is tried; nothing has reached the client yet. An
//! upstream 400 is the request's fault and is returned as is. Once the first byte is in,
//! the response is committed and streams through [`UpstreamBody`] unbuffered.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::catalog::{Model, Provider};
use super::chat::ChatRequest;
use super::errors::ApiError;
use super::simulated::Simulator;
use super::sse::UpstreamBody;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why one provider did not serve.
#[derive(Debug)]
enum Failure {
    /// 429: try the next; 429 to the client when every provider says so.
    RateLimited(String),
    /// Unreachable, 5xx, not streaming, or cut before its first byte: try the next.
    Unavailable(String),
    /// The upstream refused the request itself (400): the client's to fix.
    Rejected(ApiError),
}

/// The upstream side of the proxy: a pooled HTTP(S) client and the simulated model.
#[derive(Clone, Debug)]
pub struct Upstreams {
    client: HttpsClient,
    simulator: Simulator,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstreams {
    /// Upstreams with these timeouts (until the first streamed byte; between bytes).
    pub fn new(simulator: Simulator, first_byte_timeout: Duration, idle_timeout: Duration) -> Self {
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Upstreams { client, simulator, first_byte_timeout, idle_timeout }
    }

    /// Streams the completion of `chat` from `model`'s providers (or the simulator).
    pub async fn complete(&self, model: &Model, chat: &ChatRequest) -> Result<Response, ApiError> {
        if model.is_simulated() {
            return Ok(self.simulator.respond(&model.id, chat));
        }
        let mut failures = Vec::new();
        for provider in model.candidates(Instant::now()) {
            match self.attempt(&provider, chat).await {
                Ok(response) => {
                    provider.health.succeeded();
                    return Ok(response);
                }
                Err(Failure::Rejected(error)) => return Err(error),
                Err(Failure::RateLimited(why)) => {
                    provider.health.failed();
                    failures.push((format!("{}: {why}", provider.upstream.name), true));
                }
                Err(Failure::Unavailable(why)) => {
                    provider.health.failed();
                    failures.push((format!("{}: {why}", provider.upstream.name), false));
                }
            }
        }
        let all_limited = failures.iter().all(|(_, limited)| *limited);
        let detail: Vec<&str> = failures.iter().map(|(why, _)| why.as_str()).collect();
        let message = format!("No provider of {} could serve the request ({}).", model.id, detail.join("; "));
        Err(if all_limited { ApiError::rate_limited(message) } else { ApiError::bad_gateway(message) })
    }

    /// One provider, until its first streamed byte.
    async fn attempt(&self, provider: &Provider, chat: &ChatRequest) -> Result<Response, Failure> {
        let mut request = Request::post(provider.upstream.chat_url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(chat.upstream_body(&provider.model)))
            .map_err(|e| Failure::Unavailable(format!("cannot build the request: {e}")))?;
        if let Some(key) = &provider.upstream.api_key {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| Failure::Unavailable("the API key is not a valid header".into()))?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let started = tokio::time::timeout(self.first_byte_timeout, async {
            let response = self.client.request(request).await.map_err(|e| Failure::Unavailable(connect_error(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(refusal(status, response.into_body()).await);
            }
            let streams = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
            if !streams {
                return Err(Failure::Unavailable("answered without an event stream".into()));
            }
            let mut body = response.into_body();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Ok((data, body)),
                        _ => continue,
                    },
                    Some(Err(e)) => return Err(Failure::Unavailable(format!("failed before its first byte: {e}"))),
                    None => return Err(Failure::Unavailable("ended before its first byte".into())),
                }
            }
        })
        .await;
        let (first, body) = match started {
            Ok(started) => started?,
            Err(_) => return Err(Failure::Unavailable(format!("no first byte within {:?}", self.first_byte_timeout))),
        };
        let mut response = Response::new(Body::new(UpstreamBody::new(body, first, self.idle_timeout)));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    }
}

/// What a non-2xx upstream answer means for the attempt.
async fn refusal(status: StatusCode, body: hyper::body::Incoming) -> Failure {
    let bytes = tokio::time::timeout(Duration::from_secs(5), http_body_util::Limited::new(body, 64 << 10).collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
    match status {
        StatusCode::TOO_MANY_REQUESTS => Failure::RateLimited(format!("rate limited: {message}")),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            Failure::Rejected(ApiError::invalid_request(format!("The upstream refused the request: {message}")))
        }
        _ => Failure::Unavailable(format!("answered {status}: {message}")),
    }
}

/// A connection error with its cause (hyper-util's own message is only "client error").
fn connect_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
