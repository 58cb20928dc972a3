//! gRPC answers: a refusal as a trailers-only gRPC response, and the trailers that end a
//! gRPC stream whose budget ran out.
//!
//! gRPC clients read the outcome of a call from `grpc-status`, not from the HTTP status:
//! a `402` reaches them as a transport error. So a refusal to a gRPC request is answered
//! `200` with no body and the status in the headers ("trailers-only"), the challenges in
//! `www-authenticate` metadata and x402's `payment-required` as it is.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::error::{PaymentError, PaymentErrorKind};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes the layer answers with.
mod code {
    pub(super) const INVALID_ARGUMENT: u8 = 3;
    pub(super) const DEADLINE_EXCEEDED: u8 = 4;
    pub(super) const NOT_FOUND: u8 = 5;
    pub(super) const RESOURCE_EXHAUSTED: u8 = 8;
    pub(super) const FAILED_PRECONDITION: u8 = 9;
    pub(super) const UNIMPLEMENTED: u8 = 12;
    pub(super) const INTERNAL: u8 = 13;
    pub(super) const UNAVAILABLE: u8 = 14;
    pub(super) const UNAUTHENTICATED: u8 = 16;
}

impl PaymentErrorKind {
    /// The [gRPC status code] a refusal of this kind carries when the request is gRPC.
    ///
    /// A payment to make (no credential, or one that does not pay: a bad proof, an expired
    /// or unknown challenge, too little, a channel short of a voucher) is
    /// `UNAUTHENTICATED` (16): like HTTP's 401 it
    /// comes with challenges in `www-authenticate`, and it is what gRPC maps a 401 to, so
    /// clients and proxies treat it as "retry with credentials", never as a transient
    /// failure to retry blindly (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`) or a dead end
    /// (`FAILED_PRECONDITION`). A credential that cannot be read or does not fit is
    /// `INVALID_ARGUMENT` (3); a channel whose deposit must grow, or that must be reopened,
    /// before anything else works is `FAILED_PRECONDITION` (9) or `NOT_FOUND` (5); a store
    /// or chain that
    /// cannot answer is `UNAVAILABLE` (14). A stream whose budget runs out ends with
    /// `RESOURCE_EXHAUSTED` (8), gRPC's code for an exhausted quota.
    ///
    /// ```
    /// use tollgate::PaymentErrorKind;
    ///
    /// assert_eq!(PaymentErrorKind::PaymentRequired.grpc_code(), 16);
    /// assert_eq!(PaymentErrorKind::MalformedCredential.grpc_code(), 3);
    /// assert_eq!(PaymentErrorKind::Unavailable.grpc_code(), 14);
    /// ```
    ///
    /// [gRPC status code]: https://grpc.github.io/grpc/core/md_doc_statuscodes.html
    pub fn grpc_code(self) -> u8 {
        use PaymentErrorKind::*;
        match self {
            MalformedCredential | InvalidPayload | MethodUnsupported | BadRequest => code::INVALID_ARGUMENT,
            RequestTimeout => code::DEADLINE_EXCEEDED,
            ChannelNotFound => code::NOT_FOUND,
            PayloadTooLarge => code::RESOURCE_EXHAUSTED,
            AmountExceedsDeposit | ChannelFinalized => code::FAILED_PRECONDITION,
            UpgradeRefused => code::UNIMPLEMENTED,
            Unpriced => code::INTERNAL,
            Unavailable => code::UNAVAILABLE,
            _ => code::UNAUTHENTICATED,
        }
    }
}

/// `refusal` (a response the layer wrote, with its [`PaymentError`] in the extensions) in
/// trailers-only gRPC form; any other response is returned as it is.
pub(crate) fn refusal(refusal: Response<Bytes>) -> Response<Bytes> {
    let Some(error) = refusal.extensions().get::<PaymentError>().cloned() else { return refusal };
    let (mut head, _problem) = refusal.into_parts();
    head.status = StatusCode::OK;
    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    head.headers.remove(header::CONTENT_LENGTH);
    set_status(&mut head.headers, error.kind().grpc_code(), &error.to_string());
    Response::from_parts(head, Bytes::new())
}

/// The trailers that end a gRPC stream whose budget ran out.
pub(crate) fn budget_exhausted() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    set_status(&mut trailers, code::RESOURCE_EXHAUSTED, "payment budget exhausted: pay for more to continue");
    trailers
}

/// Whether a response's headers carry a gRPC error status (a trailers-only error answer).
pub(crate) fn is_error(headers: &HeaderMap) -> bool {
    headers.get(GRPC_STATUS).is_some_and(|status| status.as_bytes() != b"0")
}

fn set_status(headers: &mut HeaderMap, code: u8, message: &str) {
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    // Percent-encoded: always a valid header value.
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("pay 100%\n€"), "pay 100%25%0A%E2%82%AC");
    }

    #[test]
    fn a_refusal_becomes_trailers_only_with_its_metadata() {
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        let mut response = Response::new(Bytes::from_static(b"{\"type\":\"problem\"}"));
        *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Payment id=\"x\""));
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("18"));
        response.extensions_mut().insert(error);
        let grpc = refusal(response);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert!(grpc.body().is_empty());
        let headers = grpc.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-status"], "16");
        assert_eq!(headers["grpc-message"], "payment required: Payment is required.");
        assert_eq!(headers["www-authenticate"], "Payment id=\"x\"");
        assert!(headers.get(header::CONTENT_LENGTH).is_none());
        assert!(is_error(headers));
    }

    #[test]
    fn other_answers_pass_as_they_are() {
        let response = Response::new(Bytes::from_static(b"ok"));
        let same = refusal(response);
        assert_eq!(same.status(), StatusCode::OK);
        assert_eq!(same.body(), &Bytes::from_static(b"ok"));
    }

    #[test]
    fn codes_follow_what_the_client_must_do() {
        use PaymentErrorKind::*;
        for (kind, expected) in [
            (PaymentRequired, 16),
            (VerificationFailed, 16),
            (PaymentExpired, 16),
            (MalformedCredential, 3),
            (InsufficientBalance, 16),
            (AmountExceedsDeposit, 9),
            (ChannelNotFound, 5),
            (Unavailable, 14),
            (Unpriced, 13),
        ] {
            assert_eq!(kind.grpc_code(), expected, "{kind:?}");
        }
        assert_eq!(budget_exhausted()["grpc-status"], "8");
    }
}
