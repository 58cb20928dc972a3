//! [`Proof`]: what a grant's settlement reports to the client.

use http::{HeaderName, HeaderValue};

use crate::error::PaymentError;

/// How a settlement ended, as far as the response is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofStatus {
    /// The payment settled (possibly for nothing, when nothing was delivered).
    Settled,
    /// The outcome is not known yet (a settlement still under way or ambiguous); the proof
    /// names what to look it up by.
    Pending,
    /// The payment could not be settled: a plain response is answered with its error
    /// (`402`) instead of its body.
    Failed,
}

/// The receipt of a settlement that runs while the response is held back: a header for a
/// plain response, the data of the final `payment-receipt` event of an SSE stream.
///
/// A method makes one in the future it hands to [`Grant::proven_by`](super::Grant::proven_by).
///
/// ```
/// use http::{HeaderName, HeaderValue};
/// use serde_json::json;
/// use tollgate::method::{Proof, ProofStatus};
///
/// let proof = Proof::settled(json!({"success": true, "transaction": "0xabc"}))
///     .header(HeaderName::from_static("payment-response"), HeaderValue::from_static("eyJ9"));
/// assert_eq!(proof.status(), ProofStatus::Settled);
/// assert_eq!(proof.event()["transaction"], "0xabc");
/// ```
#[derive(Clone, Debug)]
pub struct Proof {
    status: ProofStatus,
    event: serde_json::Value,
    header: Option<(HeaderName, HeaderValue)>,
    error: Option<PaymentError>,
}

impl Proof {
    /// A settled payment whose receipt event carries `event`.
    pub fn settled(event: serde_json::Value) -> Self {
        Proof { status: ProofStatus::Settled, event, header: None, error: None }
    }

    /// A settlement whose outcome is not known yet.
    pub fn pending(event: serde_json::Value) -> Self {
        Proof { status: ProofStatus::Pending, event, header: None, error: None }
    }

    /// A settlement that failed: a plain response answers `error` instead of its body.
    pub fn failed(error: PaymentError, event: serde_json::Value) -> Self {
        Proof { status: ProofStatus::Failed, event, header: None, error: Some(error) }
    }

    /// The header a plain response carries this proof in.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    /// How the settlement ended.
    pub fn status(&self) -> ProofStatus {
        self.status
    }

    /// The data of the SSE `payment-receipt` event.
    pub fn event(&self) -> &serde_json::Value {
        &self.event
    }

    /// The header of a plain response, if the method gave one.
    pub fn header_pair(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.header.as_ref()
    }

    /// Why the settlement failed.
    pub fn error(&self) -> Option<&PaymentError> {
        self.error.as_ref()
    }
}
