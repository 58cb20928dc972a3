//! [`PrepaidApi`]: the prepaid balance's own endpoints.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Deposits, Prepaid, SIGN_IN_WITH_X, SIWX_EXTENSION, SessionTokens, SignInError, UsageRecord};
use crate::error::BoxError;
use crate::store::{ChannelState, ChannelStore};

/// The largest deposit request body read.
const BODY_LIMIT: usize = 4 * 1024;
/// How long a deposit request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many usage records `GET …/usage` lists by default, and at most.
const USAGE_DEFAULT: usize = 50;
const USAGE_MAX: usize = crate::store::MAX_USAGE_RECORDS;
/// The retry hint of a deposit not mined (or confirmed) yet, in seconds.
const RETRY_AFTER: &str = "5";

/// The endpoints of a prepaid balance, as a tower service (mount it beside the paid
/// routes, with axum's `route_service` or `nest_service`, say). Under a prefix (`/v1` by
/// default):
///
/// | request | answer |
/// | --- | --- |
/// | `POST /v1/deposits` `{"txHash":"0x…"}` | `200` the credited deposit and the balance ([`Deposits::claim`]); `404` + `Retry-After` while not mined or confirmed; `400` for a wrong token, recipient or a failed transaction |
/// | `POST /v1/sign-in` with `SIGN-IN-WITH-X` | `200 {"token","expiresAt","address"}`: a session token ([`SessionTokens`]); without a valid proof `402` with a fresh SIWX challenge in `PAYMENT-REQUIRED` (`extensions["sign-in-with-x"]`) and the body |
/// | `GET /v1/balance` with `Authorization: Bearer` | `200 {"address","available","reserved","spent","deposits"}` |
/// | `GET /v1/usage?limit=N` with `Authorization: Bearer` | `200 {"address","usage":[UsageRecord…]}`, newest first |
///
/// Errors are `application/problem+json`; a missing or invalid token is `401`.
///
/// ```
/// use tollgate::Secret;
/// use tollgate::method::prepaid::{Prepaid, PrepaidApi, Siwx};
/// use tollgate::store::MemoryStore;
///
/// let secret = Secret::new("a long random secret of 32+ bytes");
/// let siwx = Siwx::new(&secret, "api.example.com", "https://api.example.com/v1/sign-in", [8453]);
/// let api = PrepaidApi::new(Prepaid::new(siwx), MemoryStore::new());
/// # let _ = api;
/// ```
pub struct PrepaidApi<St> {
    inner: Arc<Inner<St>>,
}

struct Inner<St> {
    prepaid: Prepaid,
    store: St,
    deposits: Option<Deposits>,
    prefix: String,
}

impl<St> Clone for PrepaidApi<St> {
    fn clone(&self) -> Self {
        PrepaidApi { inner: self.inner.clone() }
    }
}

impl<St: ChannelStore> PrepaidApi<St> {
    /// The endpoints of `prepaid` balances kept in `store` (the layer's store); deposits
    /// are refused (`404`) until [`deposits`](Self::deposits) is set.
    pub fn new(prepaid: Prepaid, store: St) -> Self {
        PrepaidApi { inner: Arc::new(Inner { prepaid, store, deposits: None, prefix: "/v1".to_owned() }) }
    }

    /// Accepts on-chain deposits verified by `deposits`.
    pub fn deposits(self, deposits: Deposits) -> Self {
        self.map(|inner| inner.deposits = Some(deposits))
    }

    /// Serves under `prefix` instead of `/v1` (no trailing slash).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.map(|inner| inner.prefix = prefix)
    }

    fn map(self, f: impl FnOnce(&mut Inner<St>)) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner);
                PrepaidApi { inner: Arc::new(inner) }
            }
            // Configured after being cloned: keep it as it is (builders run first).
            Err(inner) => PrepaidApi { inner },
        }
    }
}

impl<St: ChannelStore, B> tower_service::Service<Request<B>> for PrepaidApi<St>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.route(request).await) })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DepositRequest {
    tx_hash: String,
}

impl<St: ChannelStore> Inner<St> {
    async fn route<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path().strip_prefix(self.prefix.as_str()).unwrap_or("");
        match (request.method().clone(), path) {
            (Method::POST, "/deposits") => self.deposit(request).await,
            (Method::POST, "/sign-in") => self.sign_in(request.headers()).await,
            (Method::GET, "/balance") => self.balance(request.headers()).await,
            (Method::GET, "/usage") => self.usage(request.headers(), request.uri().query()).await,
            _ => problem(StatusCode::NOT_FOUND, "not-found", "no such prepaid endpoint"),
        }
    }

    async fn deposit<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Some(deposits) = &self.deposits else {
            return problem(StatusCode::NOT_FOUND, "not-found", "this server takes no on-chain deposits");
        };
        let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(request.into_body(), BODY_LIMIT).collect()).await;
        let Ok(Ok(body)) = read else {
            return problem(StatusCode::BAD_REQUEST, "bad-request", "the body did not arrive, in time or in size");
        };
        let Ok(DepositRequest { tx_hash }) = serde_json::from_slice(&body.to_bytes()) else {
            return problem(StatusCode::BAD_REQUEST, "bad-request", "expected {\"txHash\":\"0x…\"}");
        };
        match deposits.claim(&tx_hash, &self.store).await {
            Ok(deposit) => ok(json!({
                "txHash": format!("{:#x}", deposit.tx_hash),
                "payer": format!("{:#x}", deposit.payer),
                "amount": deposit.amount,
                "fresh": deposit.fresh,
                "balance": balance(&deposit.balance),
            })),
            Err(error) => {
                let mut response = problem(error.status(), error.code(), &error.to_string());
                if error.status() == StatusCode::NOT_FOUND {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
                }
                response
            }
        }
    }

    async fn sign_in(&self, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
        let Some(proof) = headers.get(SIGN_IN_WITH_X) else {
            return self.challenge("sign in: sign the challenge and send it in SIGN-IN-WITH-X");
        };
        let Ok(proof) = proof.to_str() else { return self.challenge(&SignInError::Malformed.to_string()) };
        match self.prepaid.siwx().sign_in(proof, &self.store).await {
            Ok(address) => {
                let token = self.prepaid.tokens().issue(address);
                let mut response = ok(json!({
                    "token": token.token,
                    "expiresAt": token.expires,
                    "address": format!("{address:#x}"),
                }));
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(SignInError::Unavailable(_)) => {
                problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the sign-in store is unavailable")
            }
            Err(error) => self.challenge(&error.to_string()),
        }
    }

    /// A `402` with a fresh challenge, as the x402 `sign-in-with-x` extension carries it.
    fn challenge(&self, detail: &str) -> Response<Full<Bytes>> {
        let challenge = self.prepaid.siwx().challenge();
        let extensions = json!({ SIWX_EXTENSION: challenge });
        let required = json!({
            "x402Version": 2,
            "error": detail,
            "resource": { "url": challenge.info.uri },
            "accepts": [],
            "extensions": extensions,
        });
        let mut body = problem_json(StatusCode::PAYMENT_REQUIRED, "sign-in-required", detail);
        body["extensions"] = extensions;
        let mut response = json_response(StatusCode::PAYMENT_REQUIRED, &body, "application/problem+json");
        let encoded = STANDARD.encode(required.to_string());
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            response.headers_mut().insert(crate::wire::x402::PAYMENT_REQUIRED, value);
        }
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The signed-in payer's balance, or the `401` to answer.
    async fn signed_in(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<(alloy::primitives::Address, ChannelState), Response<Full<Bytes>>> {
        let payer = SessionTokens::bearer(headers).and_then(|token| self.prepaid.tokens().check(token));
        let Some(payer) = payer else {
            let mut response =
                problem(StatusCode::UNAUTHORIZED, "unauthorized", "send a valid session token as a bearer token");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(response);
        };
        match self.store.load(&Prepaid::account(payer)).await {
            Ok(state) => Ok((payer, state.unwrap_or_default())),
            Err(_) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store is unavailable")),
        }
    }

    async fn balance(&self, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
        match self.signed_in(headers).await {
            Ok((payer, state)) => {
                let mut body = balance(&state);
                body["address"] = json!(format!("{payer:#x}"));
                ok(body)
            }
            Err(response) => response,
        }
    }

    async fn usage(&self, headers: &http::HeaderMap, query: Option<&str>) -> Response<Full<Bytes>> {
        let (payer, _) = match self.signed_in(headers).await {
            Ok(signed_in) => signed_in,
            Err(response) => return response,
        };
        let limit = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("limit=")?.parse::<usize>().ok())
            .unwrap_or(USAGE_DEFAULT)
            .min(USAGE_MAX);
        match self.store.usage(&Prepaid::account(payer), limit).await {
            Ok(records) => {
                let usage: Vec<UsageRecord> = records.iter().filter_map(|r| UsageRecord::from_bytes(r)).collect();
                ok(json!({ "address": format!("{payer:#x}"), "usage": usage }))
            }
            Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store is unavailable"),
        }
    }
}

/// A balance as the endpoints show it; `deposits` is the total ever credited.
fn balance(state: &ChannelState) -> Value {
    json!({
        "available": state.available(),
        "reserved": state.reserved,
        "spent": state.spent,
        "deposits": state.deposit,
    })
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &body, "application/json")
}

fn problem_json(status: StatusCode, code: &str, detail: &str) -> Value {
    json!({
        "type": format!("https://tollgate.rs/problems/prepaid/{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    })
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response<Full<Bytes>> {
    json_response(status, &problem_json(status, code, detail), "application/problem+json")
}

fn json_response(status: StatusCode, body: &Value, media_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

impl<St> fmt::Debug for PrepaidApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrepaidApi")
            .field("prepaid", &self.inner.prepaid)
            .field("deposits", &self.inner.deposits)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}
