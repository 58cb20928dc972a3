//! How offers and payments travel: the wire forms, apart from what a method offers and
//! how it verifies.
//!
//! - [`mpp`]: the MPP `Payment` HTTP authentication scheme (`WWW-Authenticate: Payment`
//!   challenges, `Authorization: Payment` credentials, `Payment-Receipt`).
//! - [`x402`]: x402 v2 (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE`) and v1
//!   (the JSON body, `X-PAYMENT`, `X-PAYMENT-RESPONSE`).
//!
//! One `402` carries every form at once ([`payment_required`]): a `WWW-Authenticate:
//! Payment` value per MPP offer, a `PAYMENT-REQUIRED` header when there are x402 offers,
//! and one `application/problem+json` body (RFC 9457) whose extension members carry x402's
//! `x402Version`, `accepts` and `error`. A request presents at most one payment, in
//! whichever form its client speaks ([`Presented`]).

pub mod mpp;
pub mod x402;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, request};

use crate::error::{PaymentError, PaymentErrorKind};
use mpp::{Credential, ProblemDocument};
use x402::{PaymentPayload, PaymentRequired, PaymentRequirements, PaymentRequirementsV1, Resource, X402Header};

/// The payment a request presents, in its wire form.
#[derive(Clone, Debug, PartialEq)]
pub enum Presented {
    /// An MPP `Authorization: Payment` credential.
    Mpp(Credential),
    /// An x402 payment, and the header it came in.
    X402 {
        /// `PAYMENT-SIGNATURE` or `X-PAYMENT`.
        header: X402Header,
        /// The payment.
        payment: PaymentPayload,
    },
}

impl Presented {
    /// The payment `headers` present, if any. An MPP credential that does not decode is a
    /// [`MalformedCredential`](PaymentErrorKind::MalformedCredential) (answered with a
    /// fresh challenge); an x402 header that does not decode, or payments in two forms,
    /// a [`BadRequest`](PaymentErrorKind::BadRequest).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Presented>, PaymentError> {
        let x402 = X402Header::is_present(headers);
        if x402 && Credential::is_present(headers) {
            return Err(PaymentError::new(PaymentErrorKind::BadRequest, "payments in more than one form"));
        }
        if x402 {
            let found = X402Header::from_headers(headers)?;
            return Ok(found.map(|(header, payment)| Presented::X402 { header, payment }));
        }
        Ok(Credential::from_headers(headers)?.map(Presented::Mpp))
    }

    /// Whether `headers` present a payment in any form (not decoded).
    pub fn is_present(headers: &HeaderMap) -> bool {
        Credential::is_present(headers) || X402Header::is_present(headers)
    }

    /// The method's proof, still JSON.
    pub fn payload(&self) -> &serde_json::Value {
        match self {
            Presented::Mpp(credential) => &credential.payload,
            Presented::X402 { payment, .. } => &payment.payload,
        }
    }
}

/// The x402 forms of one `402`: the `PAYMENT-REQUIRED` header value and the problem body
/// carrying the v1 members. `mpp_challenge` names the first MPP challenge of the same
/// response (the problem's `challengeId`).
pub fn payment_required(
    error: &PaymentError,
    mpp_challenge: Option<&str>,
    resource: Resource,
    accepts: Vec<PaymentRequirements>,
) -> (HeaderValue, Bytes) {
    let v1: Vec<PaymentRequirementsV1> =
        accepts.iter().map(|offer| PaymentRequirementsV1::from_v2(offer, &resource)).collect();
    let required = PaymentRequired {
        x402_version: 2,
        error: Some(error.detail().to_owned()),
        resource,
        accepts,
        extensions: None,
    };
    let body = ProblemDocument::new(error, mpp_challenge)
        .extension("x402Version", serde_json::json!(1))
        .extension("error", serde_json::Value::String(error.detail().to_owned()))
        .extension("accepts", serde_json::to_value(v1).unwrap_or_default());
    (x402::encode_header(&required), body.to_bytes())
}

/// The resource a request is for, as x402 names it: its URL (the `Host` header and path
/// when the request line is not absolute; `https` assumed).
pub fn resource(head: &request::Parts) -> Resource {
    let url = match (head.uri.scheme(), head.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())) {
        (Some(_), _) | (None, None) => head.uri.to_string(),
        (None, Some(host)) => format!("https://{host}{}", head.uri.path()),
    };
    Resource { url, description: None, mime_type: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use base64::Engine as _;

    fn requirement(amount: u128) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:8453".into(),
            amount: Amount::new(amount),
            asset: "0xA".into(),
            pay_to: "0xB".into(),
            max_timeout_seconds: 60,
            extra: Some(serde_json::json!({"name": "USDC", "version": "2"})),
        }
    }

    #[test]
    fn one_402_carries_the_header_and_a_problem_body_with_v1_accepts() {
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        let (head, _) =
            http::Request::builder().uri("/v1/chat").header("host", "api.example.com").body(()).unwrap().into_parts();
        let (header, body) =
            payment_required(&error, Some("cid"), resource(&head), vec![requirement(7), requirement(9)]);
        let json = base64::engine::general_purpose::STANDARD.decode(header.as_bytes()).unwrap();
        let required: PaymentRequired = serde_json::from_slice(&json).unwrap();
        assert_eq!((required.x402_version, required.accepts.len()), (2, 2));
        assert_eq!(required.resource.url, "https://api.example.com/v1/chat");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "https://paymentauth.org/problems/payment-required");
        assert_eq!(body["challengeId"], "cid");
        assert_eq!(body["x402Version"], 1);
        assert_eq!(body["error"], "Payment is required.");
        assert_eq!(body["accepts"][0]["maxAmountRequired"], "7");
        assert_eq!(body["accepts"][1]["maxAmountRequired"], "9");
        assert_eq!(body["accepts"][0]["resource"], "https://api.example.com/v1/chat");
        assert_eq!(body["accepts"][0]["network"], "eip155:8453");
    }

    #[test]
    fn a_request_presents_one_payment_in_one_form() {
        let mut headers = HeaderMap::new();
        assert_eq!(Presented::from_headers(&headers).unwrap(), None);
        headers.insert(
            x402::X_PAYMENT,
            HeaderValue::from_static(r#"{"x402Version":1,"scheme":"exact","network":"base","payload":{}}"#),
        );
        assert!(matches!(
            Presented::from_headers(&headers),
            Ok(Some(Presented::X402 { header: X402Header::XPayment, .. }))
        ));
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Payment abc"));
        assert_eq!(Presented::from_headers(&headers).unwrap_err().kind(), PaymentErrorKind::BadRequest);
        assert!(Presented::is_present(&headers));
    }
}
