//! The `request` parameter: base64url (no padding) of the RFC 8785 (JCS) form of a JSON
//! object. We always write the strict form and read leniently, as both SDKs do.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::{PaymentError, PaymentErrorKind};

/// URL-safe alphabet, no padding (stripped first), stray low bits tolerated.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes a challenge `request` (or `opaque`) object: base64url, no padding, of its
/// RFC 8785 canonical JSON, so equal objects always give equal strings (and ids).
///
/// ```
/// let request = tollgate::wire::mpp::encode_request(&serde_json::json!({"amount": "1000000"}));
/// assert_eq!(request, "eyJhbW91bnQiOiIxMDAwMDAwIn0");
/// ```
///
/// # Panics
///
/// Only if `serde_json`'s `arbitrary_precision` feature is on and `value` holds a number
/// too large for an `f64`, which JCS cannot write.
pub fn encode_request(value: &serde_json::Value) -> String {
    canonical(value).expect("a serde_json::Value has string keys and finite numbers")
}

/// The JCS base64url form of `value`, or `None` if JCS refuses it.
pub(crate) fn canonical(value: &serde_json::Value) -> Option<String> {
    let json = serde_json_canonicalizer::to_vec(value).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a `request` parameter leniently: the `-_` or `+/` alphabet, with or without
/// `=` padding. It must hold a JSON object.
///
/// Errors are [`MalformedCredential`](PaymentErrorKind::MalformedCredential), as mppx
/// answers for a credential whose echoed `request` does not decode.
/// [`Challenge::decode_request`](super::Challenge::decode_request) reports
/// [`InvalidChallenge`](PaymentErrorKind::InvalidChallenge) instead.
pub fn decode_request(s: &str) -> Result<serde_json::Value, PaymentError> {
    let malformed = |detail| PaymentError::new(PaymentErrorKind::MalformedCredential, detail);
    let bytes = decode_base64(s.as_bytes()).ok_or_else(|| malformed("request is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(malformed("request is not a JSON object")),
        Err(_) => Err(malformed("request is not valid JSON")),
    }
}

/// Lenient base64 decoding shared by requests, credentials and receipts.
pub(crate) fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    // Any run of `=` is dropped: a wrong padding count hides no other data.
    let end = input.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let input = &input[..end];
    if input.iter().any(|&b| b == b'+' || b == b'/') {
        let translated: Vec<u8> = input
            .iter()
            .map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                b => b,
            })
            .collect();
        return LENIENT.decode(translated).ok();
    }
    LENIENT.decode(input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_jcs_without_padding() {
        let value = json!({"recipient": "0xabcd", "amount": "1000000", "methodDetails": {"chainId": 42431}});
        assert_eq!(
            String::from_utf8(URL_SAFE_NO_PAD.decode(encode_request(&value)).unwrap()).unwrap(),
            r#"{"amount":"1000000","methodDetails":{"chainId":42431},"recipient":"0xabcd"}"#
        );
        assert!(!encode_request(&json!({"a": "b"})).contains('='));
    }

    #[test]
    fn decodes_either_alphabet_with_or_without_padding() {
        // `{"a":"ÿ?"}` encodes with both `/` (or `_`) and padding.
        let value = json!({"a": "\u{ff}?"});
        let json = serde_json::to_vec(&value).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&json);
        assert!(standard.contains('/') && standard.ends_with('='));
        for s in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            URL_SAFE_NO_PAD.encode(&json),
            base64::engine::general_purpose::URL_SAFE.encode(&json),
            format!("{}==", URL_SAFE_NO_PAD.encode(&json)), // too much padding hides nothing
        ] {
            assert_eq!(decode_request(&s).unwrap(), value, "{s}");
        }
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        for s in ["", "!!!", &URL_SAFE_NO_PAD.encode("[1]"), &URL_SAFE_NO_PAD.encode("{nope")] {
            let e = decode_request(s).unwrap_err();
            assert_eq!(e.kind(), PaymentErrorKind::MalformedCredential, "{s}");
        }
    }
}
