//! [`Pricing`]: what a request costs, decided before anyone pays.

use bytes::Bytes;
use http::request;

use crate::amount::{Price, Quote};
use crate::error::{PaymentError, PaymentErrorKind};

/// Prices a request from its head and, when [`reads_body`](Pricing::reads_body) says so,
/// its body (read up to the layer's body limit, so an LLM proxy can price by `model`).
///
/// `Ok(None)` says this request is deliberately not for sale: it reaches the inner service
/// unpaid and unmetered (an unknown model the handler answers with 404, say). Errors refuse
/// the request. A layer with no pricing set fails closed with a 500.
///
/// Implemented for a fixed [`Price`], a fixed [`Quote`], closures over the head
/// `Fn(&request::Parts) -> Result<Option<Quote>, PaymentError>`, and [`PriceByBody`].
///
/// # Pricing by body
///
/// The core reads a request body only for a pricing that asks ([`PriceByBody`], or any
/// [`Pricing::reads_body`]), and then in one place: after a credential's HMAC id and realm
/// are checked (a forged credential never makes the server read), up to
/// [`body_limit`](crate::PaymentLayer::body_limit) (`413`) and
/// [`body_timeout`](crate::PaymentLayer::body_timeout) (`408`). The inner service gets the
/// very bytes that were priced ([`RequestBody`](crate::RequestBody)), so the quote cannot
/// drift from the body, and the same body is quoted the same every time (the `402` and the
/// paid retry price it alike; a pricing function must be deterministic for that, as it is
/// when it reads only the head and the body).
///
/// There is no separate body-parsing layer in the crate: a service that parses its body
/// anyway (the LLM proxy example validates the chat request and answers in OpenAI's error
/// shape) can do so in its own middleware in front of the layer, put the parsed value in
/// the request's extensions, and price from there with a head-only pricing. Both shapes
/// meet the same rules; `PriceByBody` is the one the crate caps and tests.
pub trait Pricing: Send + Sync + 'static {
    /// Whether `quote` needs the request body.
    fn reads_body(&self, _head: &request::Parts) -> bool {
        false
    }

    /// The quote for this request.
    fn quote(&self, head: &request::Parts, body: Option<&Bytes>) -> Result<Option<Quote>, PaymentError>;
}

impl Pricing for Price {
    fn quote(&self, _: &request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        Ok(Some(Quote::new(self.clone())))
    }
}

impl Pricing for Quote {
    fn quote(&self, _: &request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        Ok(Some(self.clone()))
    }
}

/// Wraps a closure that prices from the head and the body; the body is always read.
#[derive(Clone, Copy, Debug)]
pub struct PriceByBody<F>(pub F);

impl<F> Pricing for PriceByBody<F>
where
    F: Fn(&request::Parts, &Bytes) -> Result<Option<Quote>, PaymentError> + Send + Sync + 'static,
{
    fn reads_body(&self, _: &request::Parts) -> bool {
        true
    }

    fn quote(&self, head: &request::Parts, body: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        (self.0)(head, body.unwrap_or(&Bytes::new()))
    }
}

impl<F> Pricing for F
where
    F: Fn(&request::Parts) -> Result<Option<Quote>, PaymentError> + Send + Sync + 'static,
{
    fn quote(&self, head: &request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        self(head)
    }
}

/// The pricing of a layer that was given none: every request fails closed with a 500.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Unpriced;

impl Pricing for Unpriced {
    fn quote(&self, _: &request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        Err(PaymentError::new(PaymentErrorKind::Unpriced, "no price is configured for this route"))
    }
}
