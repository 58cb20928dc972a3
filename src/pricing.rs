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
/// Implemented for a fixed [`Price`], a fixed [`Quote`], and closures
/// `Fn(&request::Parts, Option<&Bytes>) -> Result<Option<Quote>, PaymentError>`.
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
