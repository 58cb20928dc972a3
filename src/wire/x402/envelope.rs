//! Decoding a payment header and encoding the base64 JSON headers, under a size cap.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use super::{PAYMENT_RESPONSE, PAYMENT_SIGNATURE, PaymentPayload, X_PAYMENT, X_PAYMENT_RESPONSE};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::wire::mpp::decode_base64;

/// The largest payment header decoded (16 KiB, as the MPP credential): an EVM payment is
/// well under 2 KiB.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Which header a payment came in; the receipt goes back in its pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X402Header {
    /// `PAYMENT-SIGNATURE` (v2), answered with `PAYMENT-RESPONSE`.
    PaymentSignature,
    /// `X-PAYMENT` (v1, and hybrid clients), answered with `X-PAYMENT-RESPONSE`.
    XPayment,
}

impl X402Header {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        match self {
            X402Header::PaymentSignature => PAYMENT_SIGNATURE,
            X402Header::XPayment => X_PAYMENT,
        }
    }

    /// The header the receipt goes back in.
    pub fn receipt_header(self) -> HeaderName {
        match self {
            X402Header::PaymentSignature => PAYMENT_RESPONSE,
            X402Header::XPayment => X_PAYMENT_RESPONSE,
        }
    }

    /// Whether `headers` carry an x402 payment at all (not decoded).
    pub fn is_present(headers: &HeaderMap) -> bool {
        headers.contains_key(PAYMENT_SIGNATURE) || headers.contains_key(X_PAYMENT)
    }

    /// The x402 payment of a request, if it has one: one header, one value. Both headers,
    /// or one header twice, are a [`BadRequest`](PaymentErrorKind::BadRequest); so is a
    /// value that does not decode ([`decode_payment`]).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<(X402Header, PaymentPayload)>, PaymentError> {
        let mut found = None;
        for header in [X402Header::PaymentSignature, X402Header::XPayment] {
            for value in headers.get_all(header.name()) {
                if found.replace((header, value)).is_some() {
                    return Err(bad("more than one x402 payment header"));
                }
            }
        }
        let Some((header, value)) = found else { return Ok(None) };
        let payment = decode_payment(value.as_bytes(), header == X402Header::XPayment)?;
        Ok(Some((header, payment)))
    }
}

/// Decodes a payment header value: base64 (either alphabet, padding optional) of JSON, or,
/// when `raw_json` is allowed (`X-PAYMENT`, as `@libertai/x402` 0.1.0 sends it), the JSON
/// itself. Over [`MAX_HEADER_LEN`], not base64, not JSON or not a payment: a
/// [`BadRequest`](PaymentErrorKind::BadRequest).
pub fn decode_payment(value: &[u8], raw_json: bool) -> Result<PaymentPayload, PaymentError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(bad("x402 payment header is larger than 16 KiB"));
    }
    let value = value.trim_ascii();
    let decoded;
    let json = if raw_json && value.first() == Some(&b'{') {
        value
    } else {
        decoded = decode_base64(value).ok_or_else(|| bad("x402 payment header is not base64"))?;
        &decoded[..]
    };
    serde_json::from_slice(json).map_err(|e| bad_owned(format!("x402 payment header is not a payment: {e}")))
}

/// A header value holding base64 (standard alphabet, padded) of `value`'s JSON, as the
/// x402 SDKs write `PAYMENT-REQUIRED` and the receipts.
pub fn encode_header<T: Serialize>(value: &T) -> HeaderValue {
    let json = serde_json::to_vec(value).unwrap_or_default();
    // Base64 is always a valid header value.
    HeaderValue::try_from(STANDARD.encode(json)).unwrap_or(HeaderValue::from_static(""))
}

fn bad(detail: &'static str) -> PaymentError {
    PaymentError::new(PaymentErrorKind::BadRequest, detail)
}

fn bad_owned(detail: String) -> PaymentError {
    PaymentError::new(PaymentErrorKind::BadRequest, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::x402::{PaymentRequired, Resource, SettleResponse};

    const LIBERTAI: &str = r#"{"x402Version":2,"scheme":"exact","network":"eip155:8453","payload":{"signature":"0xab","authorization":{"from":"0x1","to":"0x2","value":"10","validAfter":"0","validBefore":"9","nonce":"0x00"}}}"#;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn reads_base64_from_either_header_and_raw_json_from_x_payment_only() {
        let b64 = STANDARD.encode(LIBERTAI);
        let (header, payment) = X402Header::from_headers(&headers(&[(&PAYMENT_SIGNATURE, &b64)])).unwrap().unwrap();
        assert_eq!((header, payment.network()), (X402Header::PaymentSignature, Some("eip155:8453")));
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(LIBERTAI);
        assert!(X402Header::from_headers(&headers(&[(&X_PAYMENT, &url_safe)])).unwrap().is_some());
        let (header, raw) = X402Header::from_headers(&headers(&[(&X_PAYMENT, LIBERTAI)])).unwrap().unwrap();
        assert_eq!((header, raw), (X402Header::XPayment, payment));
        assert_eq!(header.receipt_header(), X_PAYMENT_RESPONSE);
        let err = X402Header::from_headers(&headers(&[(&PAYMENT_SIGNATURE, LIBERTAI)])).unwrap_err();
        assert_eq!(err.kind(), PaymentErrorKind::BadRequest, "v2 is base64 only");
    }

    #[test]
    fn refuses_oversize_garbage_and_duplicates_with_400() {
        let huge = "A".repeat(MAX_HEADER_LEN + 4);
        let not_json = STANDARD.encode("{nope");
        let not_payment = STANDARD.encode(r#"{"x402Version":2}"#);
        for (name, value) in [
            (&PAYMENT_SIGNATURE, huge.as_str()),
            (&X_PAYMENT, "!!!"),
            (&PAYMENT_SIGNATURE, not_json.as_str()),
            (&X_PAYMENT, "{\"x402Version\": 2"),
            (&X_PAYMENT, not_payment.as_str()),
        ] {
            let err = X402Header::from_headers(&headers(&[(name, value)])).unwrap_err();
            assert_eq!(err.kind().status(), http::StatusCode::BAD_REQUEST, "{name} {value:.20}");
        }
        let b64 = STANDARD.encode(LIBERTAI);
        let both = headers(&[(&PAYMENT_SIGNATURE, &b64), (&X_PAYMENT, &b64)]);
        assert_eq!(X402Header::from_headers(&both).unwrap_err().kind(), PaymentErrorKind::BadRequest);
        let twice = headers(&[(&X_PAYMENT, &b64), (&X_PAYMENT, &b64)]);
        assert_eq!(X402Header::from_headers(&twice).unwrap_err().kind(), PaymentErrorKind::BadRequest);
        assert!(X402Header::from_headers(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn encoded_headers_decode_back() {
        let required = PaymentRequired {
            x402_version: 2,
            error: None,
            resource: Resource { url: "https://x/y".into(), ..Resource::default() },
            accepts: vec![],
            extensions: None,
        };
        let value = encode_header(&required);
        let json = STANDARD.decode(value.as_bytes()).unwrap();
        assert_eq!(serde_json::from_slice::<PaymentRequired>(&json).unwrap(), required);
        let receipt = SettleResponse { success: true, network: "eip155:1".into(), ..SettleResponse::default() };
        let back: SettleResponse = serde_json::from_slice(&STANDARD.decode(encode_header(&receipt)).unwrap()).unwrap();
        assert_eq!(back, receipt);
    }
}
