//! Payment methods: what a route offers in its challenges and how a credential is checked.
//!
//! A [`PaymentMethod`] turns a [`Quote`] into [`Offer`]s (one `WWW-Authenticate: Payment`
//! challenge or one x402 `accepts` entry each, as the offer's [`Wire`] says) and a verified credential into a [`Verified`] outcome: either a
//! management action answered at once (a session's open, top-up, voucher or close on a
//! bodiless request) or a [`Grant`] that funds the response.
//!
//! The layer does everything method-agnostic before `verify` runs. An MPP credential: its
//! HMAC id, realm, pinned request ([`PaymentMethod::pins`]) and `expires`. An x402
//! payment (no HMAC): its `accepted` must equal (pin) an offer this route makes now, or,
//! for a v1 payment that names none, its scheme and network must match one (the method
//! then applies its own amount rule). Either way the payment goes only to the method that
//! made the matched offer, and a method never sees a request this route does not offer.

pub(crate) mod encoded;
mod forward;
pub(crate) mod grant;
mod methods;
mod offer;
#[cfg(feature = "prepaid")]
#[cfg_attr(docsrs, doc(cfg(feature = "prepaid")))]
pub mod prepaid;
mod proof;
#[cfg(feature = "tempo")]
#[cfg_attr(docsrs, doc(cfg(feature = "tempo")))]
pub mod tempo;
#[cfg(feature = "x402")]
#[cfg_attr(docsrs, doc(cfg(feature = "x402")))]
pub mod x402;

pub use grant::{Grant, Renewal, Settled};
pub use methods::{Checked, Methods, Offered, Offers};
pub use offer::{Offer, Wire};
pub use proof::{Proof, ProofStatus};

use std::future::Future;

use http::request;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::amount::{Amount, Quote};
use crate::error::PaymentError;
use crate::store::ChannelStore;
use crate::wire::Presented;
use crate::wire::mpp::{Challenge, Credential, Receipt};
use crate::wire::x402::PaymentPayload;

/// What a method was asked to verify: the payment as presented, the request it pays for
/// and the payload, both decoded into the method's own types, the request head, and the
/// quote this route gives now.
#[derive(Debug)]
#[non_exhaustive]
pub struct Verify<'a, R, P> {
    /// The payment as the client presented it (its wire form).
    pub presented: &'a Presented,
    /// The offer paid for: the echoed challenge's `request` (MPP), the payment's
    /// `accepted` or, for a v1 payment that names none, the offer it matched (x402).
    pub request: &'a R,
    /// The method's proof.
    pub payload: &'a P,
    /// The HTTP request head (method, URI, headers).
    pub head: &'a request::Parts,
    /// The price of this request; `None` for a management request the method recognised
    /// before pricing ([`PaymentMethod::manages`]).
    pub quote: Option<&'a Quote>,
    /// What the layer's voucher window costs at this request's price: how far ahead of
    /// delivery a stream asks a payer to pay ([`PaymentLayer::voucher_window`]). Zero
    /// without a quote: see [`window_units`](Verify::window_units).
    ///
    /// [`PaymentLayer::voucher_window`]: crate::PaymentLayer::voucher_window
    pub window: Amount,
    /// The voucher window in units, for a method that prices it itself (no quote).
    pub window_units: u64,
}

impl<'a, R, P> Verify<'a, R, P> {
    /// What a method verifies, outside the layer (to test a method, or to drive one from
    /// another framework); `window` is zero.
    pub fn new(
        presented: &'a Presented,
        request: &'a R,
        payload: &'a P,
        head: &'a request::Parts,
        quote: Option<&'a Quote>,
    ) -> Self {
        Verify { presented, request, payload, head, quote, window: Amount::ZERO, window_units: 0 }
    }

    /// Sets [`window`](Verify::window) and [`window_units`](Verify::window_units).
    pub fn window(mut self, window: Amount, units: u64) -> Self {
        self.window = window;
        self.window_units = units;
        self
    }

    /// The MPP credential, when the payment came as one.
    pub fn credential(&self) -> Option<&'a Credential> {
        match self.presented {
            Presented::Mpp(credential) => Some(credential),
            Presented::X402 { .. } => None,
        }
    }

    /// The echoed MPP challenge, when the payment came as a credential.
    pub fn challenge(&self) -> Option<&'a Challenge> {
        self.credential().map(|credential| &credential.challenge)
    }

    /// The x402 payment, when the payment came as one.
    pub fn x402(&self) -> Option<&'a PaymentPayload> {
        match self.presented {
            Presented::X402 { payment, .. } => Some(payment),
            Presented::Mpp(_) => None,
        }
    }
}

/// The outcome of a verified credential.
#[derive(Debug)]
pub enum Verified {
    /// A management action: answer `204 No Content` with this receipt; the inner service
    /// is not called.
    Respond(Receipt),
    /// Serve the request, funded by this grant.
    Serve(Grant),
}

/// A way to pay. See the [module docs](self).
///
/// A method's challenge request and payload are its own serde types: the layer encodes an
/// offer's request once (JCS base64url for MPP, JSON for x402), decodes what a client
/// echoes into [`Request`](PaymentMethod::Request) and pins it by comparing typed values
/// ([`pins`](PaymentMethod::pins)), and decodes the proof into
/// [`Payload`](PaymentMethod::Payload) before [`verify`](PaymentMethod::verify) runs.
pub trait PaymentMethod: Send + Sync + 'static {
    /// What an offer asks for (an MPP challenge's `request`, an x402 `accepts[i]`).
    type Request: Serialize + DeserializeOwned + PartialEq + Send + Sync + 'static;
    /// The method's proof (an MPP credential's `payload`, an x402 payment's `payload`).
    type Payload: DeserializeOwned + Send + Sync + 'static;

    /// The offers for a request priced at `quote`; each becomes one challenge (or one
    /// x402 `accepts` entry). An empty list means this method cannot sell the request (the
    /// layer fails closed).
    fn offers(&self, quote: &Quote) -> Vec<Offer<Self::Request>>;

    /// Whether an echoed request still matches what this route offers now (`offered`).
    /// Pinning stops a client from replaying a cheaper challenge on a pricier route. The
    /// default demands equality.
    fn pins(&self, echoed: &Self::Request, offered: &Self::Request) -> bool {
        echoed == offered
    }

    /// Whether a management request (a bodiless `POST` or `HEAD`, see
    /// [`is_management_request`]) echoing `challenge` and `echoed` is this method's own: it
    /// is then verified without pricing the request (its [`Verify::quote`] is `None`),
    /// after the layer checked the challenge's HMAC id, realm and expiry. The method checks
    /// the rest by its own rules (a session: a voucher signed for a channel it knows).
    /// Default: never.
    fn manages(&self, challenge: &Challenge, echoed: &Self::Request) -> bool {
        let _ = (challenge, echoed);
        false
    }

    /// A credential of this method's own that is not a payment: a signed-in payer's bearer
    /// session token, say (the `prepaid` method's `Authorization: Bearer tgs1.…`). The
    /// layer asks every method, in order, after pricing and before it looks for a payment;
    /// the first `Some` decides: `Ok` serves the request on the grant (reserved like any
    /// other), `Err` is refused with a fresh challenge. `None`: not this method's
    /// credential. Default: `None`, so a method that only takes payments never sees it.
    fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> impl Future<Output = Option<Result<Grant, PaymentError>>> + Send {
        let _ = (head, quote, store);
        std::future::ready(None)
    }

    /// Verifies the payment and decides what happens to the request.
    ///
    /// Errors become `402` responses with a fresh challenge (or the kind's own status);
    /// [`PaymentErrorKind::Unavailable`](crate::PaymentErrorKind::Unavailable) becomes a
    /// `503` with none.
    fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, Self::Request, Self::Payload>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send;
}

/// Whether a request is a session *management* request rather than a request for
/// content, as the reference client sends them: `HEAD`, or a `POST` with no query string
/// whose body is known to be empty.
///
/// A body is known empty with `Content-Length: 0`; in HTTP/1.x also without
/// `Content-Length` and `Transfer-Encoding` (such a request has no body, RFC 9112 §6.3).
/// In HTTP/2 and HTTP/3 a request without `Content-Length` may still carry DATA frames,
/// so it counts as content unless its body already reported its end when the request
/// arrived ([`PaymentLayer`](crate::PaymentLayer) marks such requests with
/// [`EmptyBody`]); anything else is content, and is charged as content. Whatever the
/// headers say, a POST whose body said it has content when it reached the layer (marked
/// [`NonEmptyBody`]) is content.
///
/// Vouchers, top-ups and closes go to the same URL as the content, as bodiless POSTs.
pub fn is_management_request(head: &request::Parts) -> bool {
    if head.method == http::Method::HEAD {
        return true;
    }
    if head.extensions.get::<NonEmptyBody>().is_some() {
        // The body itself says it has content: headers cannot make it empty.
        return false;
    }
    if head.method != http::Method::POST || head.uri.query().is_some_and(|q| !q.is_empty()) {
        return false;
    }
    let headers = &head.headers;
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(http::header::CONTENT_LENGTH) {
        Some(len) => len.as_bytes() == b"0",
        None => head.version <= http::Version::HTTP_11 || head.extensions.get::<EmptyBody>().is_some(),
    }
}

/// A request extension: the request's body had already ended when the request arrived
/// (`http_body::Body::is_end_stream`), so it has no content whatever its headers say. The
/// layer inserts it; [`is_management_request`] reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmptyBody;

/// A request extension: the request's body said it has content when the request arrived
/// (a size hint of at least one byte), whatever its headers say (a layer in front that
/// rewrote the body and dropped `Content-Length`, say). The layer inserts it;
/// [`is_management_request`] then never takes the request for a bodiless management
/// request. (A body that merely has not ended is not enough: many body wrappers never
/// report their end.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NonEmptyBody;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn classifies_management_requests_as_the_reference_client_sends_them() {
        assert!(is_management_request(&head("HEAD", "/v1/chat", &[])));
        assert!(is_management_request(&head("POST", "/v1/chat", &[])));
        assert!(is_management_request(&head("POST", "/v1/chat", &[("content-length", "0")])));
        assert!(!is_management_request(&head("POST", "/v1/chat", &[("content-length", "12")])));
        assert!(!is_management_request(&head("POST", "/v1/chat", &[("transfer-encoding", "chunked")])));
        assert!(!is_management_request(&head("POST", "/v1/chat?x=1", &[])));
        assert!(!is_management_request(&head("GET", "/v1/chat", &[])));
    }

    #[test]
    fn a_post_whose_body_has_content_is_content_whatever_its_headers_say() {
        for length in [None, Some("0")] {
            let headers: Vec<_> = length.map(|l| ("content-length", l)).into_iter().collect();
            let mut h1 = head("POST", "/v1/chat", &headers);
            assert!(is_management_request(&h1));
            h1.extensions.insert(NonEmptyBody);
            assert!(!is_management_request(&h1));
        }
    }

    #[test]
    fn an_http2_post_is_content_unless_its_body_is_known_empty() {
        let mut h2 = head("POST", "/v1/chat", &[]);
        h2.version = http::Version::HTTP_2;
        assert!(!is_management_request(&h2), "DATA frames may follow");
        h2.extensions.insert(EmptyBody);
        assert!(is_management_request(&h2));
        let mut h2 = head("POST", "/v1/chat", &[("content-length", "0")]);
        h2.version = http::Version::HTTP_2;
        assert!(is_management_request(&h2));
    }
}
