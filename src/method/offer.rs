//! [`Offer`]: one way a route can be paid, and the wire form it travels in.

use std::borrow::Cow;

/// How an offer travels to the client, and how its payment comes back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Wire {
    /// MPP: a `WWW-Authenticate: Payment` challenge, bound by its HMAC id; paid with
    /// `Authorization: Payment`.
    #[default]
    Mpp,
    /// x402: an `accepts` entry of `PAYMENT-REQUIRED` (v2) and of the problem body (v1);
    /// paid with `PAYMENT-SIGNATURE` or `X-PAYMENT`. The offer's request must serialize as
    /// an x402 [`PaymentRequirements`](crate::wire::x402::PaymentRequirements).
    X402,
}

/// One offer of a route: it becomes one challenge (MPP) or one `accepts` entry (x402).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Offer<R> {
    /// The method name (`tempo`, `x402`, …).
    pub method: Cow<'static, str>,
    /// The intent (`session`, `charge`; the scheme for x402: `exact`, …).
    pub intent: Cow<'static, str>,
    /// What the offer asks for, in the method's own type.
    pub request: R,
    /// An optional human-readable description (MPP; not bound into the id).
    pub description: Option<String>,
    /// How it travels.
    pub wire: Wire,
}

impl<R> Offer<R> {
    /// An MPP offer: `method`/`intent` with this `request`.
    pub fn mpp(method: impl Into<Cow<'static, str>>, intent: impl Into<Cow<'static, str>>, request: R) -> Self {
        Offer { method: method.into(), intent: intent.into(), request, description: None, wire: Wire::Mpp }
    }

    /// An x402 offer of `scheme` (`exact`, …): `request` serializes as the x402
    /// `PaymentRequirements` the client pays.
    pub fn x402(scheme: impl Into<Cow<'static, str>>, request: R) -> Self {
        Offer { method: "x402".into(), intent: scheme.into(), request, description: None, wire: Wire::X402 }
    }

    /// Sets the human-readable description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}
