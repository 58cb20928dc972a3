//! Make any HTTP service payable per use, down to the token.
//!
//! [`PaymentLayer`] wraps an inner `Service<http::Request<B>>`. It answers unpaid requests
//! with `402 Payment Required` and one `WWW-Authenticate: Payment` challenge per offered
//! payment method, verifies the credential the client sends back, and wraps the response
//! body in a [`MeteredBody`] that counts usage as it streams (requests, bytes, SSE events,
//! LLM tokens) and stops or pauses the stream the moment the paid budget runs out.
//!
//! # Example
//!
//! A route sold per SSE event, paid with a toy method that trusts the client (real
//! methods verify signed vouchers or transfers):
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::{BodyExt, Full};
//! use tollgate::{Amount, PaymentError, PaymentLayer, Price, Quote, Rate, Secret};
//! use tollgate::meter::EventMeter;
//! use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
//! use tollgate::wire::mpp::{Challenge, Credential, Receipt};
//! use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! /// Toy method: the payload names an amount the client says it paid.
//! struct Honor;
//!
//! impl PaymentMethod for Honor {
//!     type Request = serde_json::Value; // a real method has its own serde types
//!     type Payload = serde_json::Value;
//!
//!     fn offers(&self, quote: &Quote) -> Vec<Offer<serde_json::Value>> {
//!         let amount = quote.price.output.unit_price().to_string();
//!         vec![Offer::mpp("honor", "charge", serde_json::json!({ "amount": amount }))]
//!     }
//!
//!     async fn verify<St: ChannelStore>(&self, v: Verify<'_, serde_json::Value, serde_json::Value>, store: &St)
//!         -> Result<Verified, PaymentError> {
//!         let paid: Amount = v.payload["paid"].as_str().unwrap_or("0").parse().unwrap_or_default();
//!         let account = ChannelId::new(v.challenge().map_or_else(String::new, |c| c.id.clone()));
//!         store.open(&account, paid, paid).await.expect("memory store");
//!         Ok(Verified::Serve(Grant::new(account, Renewal::Never, Receipt::new("honor", "demo"))))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = Secret::new("a long random secret of 32+ bytes");
//! let layer = PaymentLayer::new(Honor, MemoryStore::new(), "api.example.com", secret)
//!     .pricing(Price::per_unit("event", Rate::per_unit(Amount::new(10))))
//!     .meter(EventMeter::default());
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req| async {
//!     let events = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
//!     let mut response = Response::new(Full::from(events));
//!     response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
//!     Ok::<_, std::convert::Infallible>(response)
//! }));
//!
//! // No credential: 402 with a challenge.
//! let response = svc.clone().oneshot(Request::new(Full::<bytes::Bytes>::default())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
//! let challenge = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
//!
//! // Pay for two events: the stream stops after the second.
//! let credential = Credential { challenge, payload: serde_json::json!({ "paid": "20" }), source: None };
//! let request = Request::builder().header(header::AUTHORIZATION, credential.to_header_value())
//!     .body(Full::<bytes::Bytes>::default()).unwrap();
//! let body = svc.oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
//! let text = String::from_utf8(body.to_vec()).unwrap();
//! assert!(text.starts_with("data: 1\n\ndata: 2\n\nevent: payment-receipt\n"));
//! # }
//! ```
//!
//! # Several methods, one route, every client
//!
//! A layer takes one [`PaymentMethod`](method::PaymentMethod) or a tuple of two to five
//! ([`Methods`](method::Methods)): `PaymentLayer::new((session, charge), store, realm,
//! secret)`. An offer says which wire form it travels in ([`Wire`](method::Wire)): the
//! `402` carries one `WWW-Authenticate: Payment` challenge per MPP offer, a
//! `PAYMENT-REQUIRED` header with the x402 offers, and one `application/problem+json` body
//! whose extension members repeat the x402 offers in v1 form ([`wire`]). A payment is
//! dispatched to the method whose current offer it matches (MPP: HMAC id, realm, method,
//! intent, that method's pinning rule; x402: its `accepted`, or scheme and network), so a
//! payment for one method never reaches another and a cheap offer never pays for a dear
//! one. Dispatch is static (no boxing of methods).
//!
//! A method's challenge request and payload are its own serde types
//! ([`PaymentMethod::Request`](method::PaymentMethod::Request),
//! [`Payload`](method::PaymentMethod::Payload)); the core encodes offers once and decodes
//! what comes back into them.
//!
//! # What the inner service sees
//!
//! A paid request carries a [`PaymentContext`] in its extensions (method, intent, payer,
//! channel, quote), inserted just before the inner service is called; with the `axum`
//! feature it is an extractor.
//!
//! # The request flow, in the source
//!
//! Read top to bottom:
//!
//! 1. `service.rs`: the fast unpaid `402` (no payment presented, nothing to read).
//! 2. `admission.rs`: a management request its method recognises (before pricing) → read
//!    the body if pricing needs it → price → the offers of every method → the payment
//!    presented ([`wire::Presented`]) matched to one offer → that offer's method verifies
//!    → reserve → insert the [`PaymentContext`].
//! 3. `future.rs`: call the inner service, wrap its body; `body.rs` + `metering/`: meter,
//!    pause for vouchers, settle.
//! 4. `respond.rs`: the layer's own answers (the `402` with every wire form, `204`
//!    receipts).
//!
//! Layout: `method/` (what is offered and how it verifies: [`method::PaymentMethod`],
//! [`method::Methods`], `method/tempo/`, `method/x402/`, `method/prepaid/`), `wire/` (how offers and payments travel:
//! `wire/mpp/` the MPP `Payment` scheme and its challenge cache, `wire/x402/` the x402
//! forms), `store/` (the money ledger), `meter/` (what a response used), `amount.rs` and
//! `pricing.rs` (what it costs).

//! # Pricing by body
//!
//! The core reads a body only for a [`Pricing`] that asks ([`PriceByBody`]), capped by
//! [`body_limit`](PaymentLayer::body_limit) (`413`) and
//! [`body_timeout`](PaymentLayer::body_timeout) (`408`); the same bytes are then handed to
//! the inner service, so the same request is quoted the same twice. No separate parsing
//! layer is needed: a service that parses its body anyway (the LLM proxy example) may do so
//! in its own middleware in front and price from the parsed value in the request's
//! extensions with a head-only [`Pricing`]. See the [`Pricing`] docs.
//!
//! # When what happens
//!
//! 1. The request is priced ([`Pricing`]); pricing may read the body up to a limit and a
//!    time limit (`413`, `408`). Before a body is read, a credential's challenge id
//!    (HMAC) and realm are checked: a forged one is refused without reading the body.
//! 2. No payment: `402` with every [`Offer`](method::Offer) in its wire form, a
//!    `payment-required` problem, `Cache-Control: no-store`. Every MPP challenge is unique
//!    (a nonce in its `opaque`, bound into its id).
//!    A method's own non-payment credential (a prepaid balance's bearer session token,
//!    [`PaymentMethod::authorize`](method::PaymentMethod::authorize)) is checked first and,
//!    when valid, takes the place of a payment.
//! 3. A payment: decoded (an x402 header that does not decode is a `400`), matched to an
//!    offer this route makes now (MPP: HMAC id, realm, pinned request, `expires`; x402:
//!    `accepted`, or scheme and network); then that offer's
//!    [`PaymentMethod`](method::PaymentMethod) verifies it. Any failure is a `402` (or the
//!    problem's own status) with fresh offers; a store or chain failure is a `503` with
//!    none, so the client never pays twice.
//! 4. A management action (a voucher, top-up or close on a bodiless `POST`) is recognised
//!    by its method before pricing and answered `204` with a `Payment-Receipt`; the inner
//!    service never runs.
//! 5. Otherwise the upfront cost is reserved, the inner service runs, and a `2xx` response
//!    is metered; anything else passes through uncharged (a `101 Switching Protocols` is
//!    refused with a `501`: what follows it could not be metered). The quote's upfront is
//!    committed as the inner service is called (a client that leaves meanwhile pays it)
//!    and refunded if it fails; the meter's count replaces it as the response streams. With
//!    [`upfront_in_stream`](PaymentLayer::upfront_in_stream), a session short of the
//!    upfront is asked for it in an event stream before the inner service is called.
//!
//! # Deployment notes
//!
//! - Prefer axum's `route_layer` to `layer`, so unknown routes answer `404`, not `402`.
//! - Put CORS outside the payment layer, so preflights are not asked to pay.
//! - Behind a proxy, SSE responses carry `X-Accel-Buffering: no`; make sure the proxy does
//!   not buffer them, or a paused stream never shows its `payment-need-voucher` event.
//! - Every instance must share the HMAC secret and a store (the memory store is for a
//!   single process).
//! - A response's reservation is a lease (the store's [`lease`](store::ChannelStore::lease),
//!   30 s by default). A live response renews it with what it has delivered so far: along
//!   with each voucher window's growth, and at least every third of the lease while it
//!   waits (a slow upstream, a pause for a voucher). If an instance crashes, its leases
//!   lapse and the next step on the channel frees them, charging what was last renewed: the
//!   seller loses at most what was delivered since (about one voucher window), the payer
//!   never pays for more than was delivered. A stream whose lease was reclaimed (its
//!   instance was cut off from the store for a whole lease) stops at once.
//! - Features `tracing` and `metrics` (off by default, compiled to nothing then): a
//!   `tollgate.payment` span per paid request with events at the money moments, and
//!   `tollgate_*` counters and histograms through the `metrics` facade (the README lists
//!   them). Install a subscriber or recorder as usual:
//!
//! ```ignore
//! // With `metrics`: any recorder, e.g. metrics-exporter-prometheus.
//! let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! // … serve `handle.render()` at `/metrics`.
//! ```
//!
//! # Differences from x402-axum and mpp
//!
//! Those settle before the body streams or meter values a handler yields; this crate
//! meters the response body itself, so any service (a reverse proxy included) can be sold
//! per token, and a failed or cut-off response is charged only for what reached the client.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, rust_2018_idioms, missing_debug_implementations)]
#![deny(unreachable_pub, unsafe_code)]

mod admission;
pub mod amount;
mod body;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod clock;
mod config;
mod context;
mod error;
mod future;
mod grpc;
mod layer;
pub mod meter;
mod metering;
pub mod method;
mod observe;
mod pricing;
mod realm;
mod request_body;
mod respond;
mod secret;
mod service;
pub mod store;
pub mod wire;

pub use amount::{Amount, Price, Quote, Rate, Usage};
pub use body::MeteredBody;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use context::MissingPaymentContext;
pub use context::PaymentContext;
pub use error::{BoxError, BudgetExhausted, ConfigError, MIN_SECRET_LEN, PaymentError, PaymentErrorKind};
pub use future::ResponseFuture;
pub use layer::PaymentLayer;
pub use pricing::{PriceByBody, Pricing, Unpriced};
pub use realm::Realm;
pub use request_body::RequestBody;
pub use secret::Secret;
pub use service::PaymentService;
