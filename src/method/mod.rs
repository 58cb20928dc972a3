//! Payment methods: what a route offers in its challenges and how a credential is checked.
//!
//! A [`PaymentMethod`] turns a [`Quote`] into [`Offer`]s (one `WWW-Authenticate: Payment`
//! challenge each) and a verified credential into a [`Verified`] outcome: either a
//! management action answered at once (a session's open, top-up, voucher or close on a
//! bodiless request) or a [`Grant`] that funds the response.
//!
//! The layer does everything method-agnostic before `verify` runs: it decodes the
//! credential, checks the HMAC id binding, the realm, the pinned request fields
//! ([`PaymentMethod::pins`]) and `expires`. A method never sees a challenge this server did
//! not issue for this route.

mod grant;
mod methods;
#[cfg(feature = "tempo")]
#[cfg_attr(docsrs, doc(cfg(feature = "tempo")))]
pub mod tempo;
#[cfg(feature = "x402")]
#[cfg_attr(docsrs, doc(cfg(feature = "x402")))]
pub mod x402;

pub use grant::{Grant, Renewal, Settled};
pub use methods::{Methods, Offers};

use std::borrow::Cow;
use std::future::Future;

use http::request;

use crate::amount::{Amount, Quote};
use crate::error::PaymentError;
use crate::scheme::{Credential, Receipt};
use crate::store::ChannelStore;

/// One offer of a route: it becomes one challenge.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// The method name (`tempo`, …).
    pub method: Cow<'static, str>,
    /// The intent (`session`, `charge`, …).
    pub intent: Cow<'static, str>,
    /// The challenge's `request` object (encoded as base64url JCS by the layer).
    pub request: serde_json::Value,
    /// An optional human-readable description (not bound into the id).
    pub description: Option<String>,
}

/// What a method was asked to verify: the credential, its echoed request (decoded), the
/// request head and the quote this route gives now.
#[derive(Debug)]
#[non_exhaustive]
pub struct Verify<'a> {
    /// The credential, its challenge already checked by the layer.
    pub credential: &'a Credential,
    /// The echoed challenge's `request`, decoded.
    pub request: &'a serde_json::Value,
    /// The HTTP request head (method, URI, headers).
    pub head: &'a request::Parts,
    /// The price of this request.
    pub quote: &'a Quote,
    /// What the layer's voucher window costs at this request's price: how far ahead of
    /// delivery a stream asks a payer to pay ([`PaymentLayer::voucher_window`]). A method
    /// may bound how far one payment runs ahead of delivery by it.
    ///
    /// [`PaymentLayer::voucher_window`]: crate::PaymentLayer::voucher_window
    pub window: Amount,
}

impl<'a> Verify<'a> {
    /// What a method verifies, outside the layer (to test a method, or to drive one from
    /// another framework); `window` is zero.
    pub fn new(
        credential: &'a Credential,
        request: &'a serde_json::Value,
        head: &'a request::Parts,
        quote: &'a Quote,
    ) -> Self {
        Verify { credential, request, head, quote, window: Amount::ZERO }
    }

    /// Sets [`window`](Verify::window).
    pub fn window(mut self, window: Amount) -> Self {
        self.window = window;
        self
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
pub trait PaymentMethod: Send + Sync + 'static {
    /// The offers for a request priced at `quote`; each becomes one challenge. An empty
    /// list means this method cannot sell the request (the layer fails closed).
    fn offers(&self, quote: &Quote) -> Vec<Offer>;

    /// Whether an echoed challenge `request` still matches what this route offers now
    /// (`offered`). Pinning stops a client from replaying a cheaper challenge on a pricier
    /// route. The default demands equality of the whole object.
    fn pins(&self, echoed: &serde_json::Value, offered: &serde_json::Value) -> bool {
        echoed == offered
    }

    /// Verifies the credential and decides what happens to the request.
    ///
    /// Errors become `402` responses with a fresh challenge (or the kind's own status);
    /// [`PaymentErrorKind::Unavailable`](crate::PaymentErrorKind::Unavailable) becomes a
    /// `503` with none.
    fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_>,
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
/// [`EmptyBody`]); anything else is content, and is charged as content.
///
/// Vouchers, top-ups and closes go to the same URL as the content, as bodiless POSTs.
pub fn is_management_request(head: &request::Parts) -> bool {
    if head.method == http::Method::HEAD {
        return true;
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
