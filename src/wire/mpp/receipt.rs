//! The `Payment-Receipt` a successful paid response carries.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::error::ReceiptParseError;
use super::expires::format_expires;
use super::request::decode_base64;
use crate::amount::Amount;

/// A payment receipt: base64url (no padding) of plain JSON in the `Payment-Receipt`
/// header of 2xx responses (never of errors).
///
/// Fields serialize in this order, which is mppx's session receipt order; absent ones
/// are left out. Unknown fields are ignored when reading.
///
/// ```
/// use tollgate::wire::mpp::Receipt;
///
/// let receipt = Receipt::new("tempo", "0xabc");
/// let back = Receipt::from_header_value(&receipt.to_header_value()).unwrap();
/// assert_eq!(back, receipt);
/// assert_eq!(back.status, "success");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The payment method, such as `tempo`.
    pub method: String,
    /// The intent, such as `session`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Always `"success"`: failed payments get a problem response, not a receipt.
    pub status: String,
    /// When the payment was accepted (RFC 3339).
    pub timestamp: String,
    /// The method's reference: a transaction hash, a channel id, a challenge id.
    pub reference: String,
    /// The id of the challenge that was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    /// The session's channel id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The highest cumulative voucher amount accepted on the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_cumulative: Option<Amount>,
    /// What the channel has spent so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent: Option<Amount>,
    /// Units charged (mppx counts the channel's cumulative units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    /// The settlement or payment transaction hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
}

impl Receipt {
    /// A `"success"` receipt for `method`, stamped now, with no optional fields.
    pub fn new(method: impl Into<String>, reference: impl Into<String>) -> Self {
        Receipt {
            method: method.into(),
            intent: None,
            status: "success".to_owned(),
            timestamp: format_expires(SystemTime::now()),
            reference: reference.into(),
            challenge_id: None,
            channel_id: None,
            accepted_cumulative: None,
            spent: None,
            units: None,
            tx_hash: None,
        }
    }

    /// The JSON text (plain `serde_json`, not JCS, as both SDKs write it).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, numbers and amounts always serialize")
    }

    /// The `Payment-Receipt` value: base64url, no padding, of [`to_json`](Self::to_json).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(URL_SAFE_NO_PAD.encode(self.to_json())).expect("base64url is a valid header value")
    }

    /// Reads a `Payment-Receipt` value (base64 decoded leniently, as requests are).
    pub fn from_header_value(value: &HeaderValue) -> Result<Receipt, ReceiptParseError> {
        let json = decode_base64(value.as_bytes()).ok_or_else(ReceiptParseError::encoding)?;
        serde_json::from_slice(&json).map_err(ReceiptParseError::json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_receipt_keeps_mppx_key_order() {
        let receipt = Receipt {
            intent: Some("session".into()),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            challenge_id: Some("cid".into()),
            channel_id: Some("0xch".into()),
            accepted_cumulative: Some(Amount::new(2000)),
            spent: Some(Amount::new(1500)),
            units: Some(3),
            ..Receipt::new("tempo", "0xch")
        };
        assert_eq!(
            receipt.to_json(),
            concat!(
                r#"{"method":"tempo","intent":"session","status":"success","#,
                r#""timestamp":"2026-01-01T00:00:00.000Z","reference":"0xch","challengeId":"cid","#,
                r#""channelId":"0xch","acceptedCumulative":"2000","spent":"1500","units":3}"#
            )
        );
        let back = Receipt::from_header_value(&receipt.to_header_value()).unwrap();
        assert_eq!(back, receipt);
    }

    #[test]
    fn charge_receipt_has_core_fields_only() {
        let receipt = Receipt { timestamp: "t".into(), ..Receipt::new("tempo", "0xhash") };
        assert_eq!(receipt.to_json(), r#"{"method":"tempo","status":"success","timestamp":"t","reference":"0xhash"}"#);
        assert!(!receipt.to_header_value().to_str().unwrap().contains('='));
    }

    #[test]
    fn new_stamps_an_rfc3339_time() {
        let ts = Receipt::new("tempo", "r").timestamp;
        assert!(humantime::parse_rfc3339(&ts).is_ok(), "{ts}");
    }

    #[test]
    fn reads_leniently_and_reports_errors() {
        let json = r#"{"method":"tempo","status":"success","timestamp":"t","reference":"r","externalId":"x"}"#;
        let padded = base64::engine::general_purpose::STANDARD.encode(json);
        let receipt = Receipt::from_header_value(&HeaderValue::from_str(&padded).unwrap()).unwrap();
        assert_eq!(receipt.reference, "r");

        let e = Receipt::from_header_value(&HeaderValue::from_static("!!")).unwrap_err();
        assert_eq!(e.to_string(), "receipt is not base64url");
        let missing = URL_SAFE_NO_PAD.encode(r#"{"method":"tempo"}"#);
        let e = Receipt::from_header_value(&HeaderValue::from_str(&missing).unwrap()).unwrap_err();
        assert!(std::error::Error::source(&e).is_some(), "{e}");
    }
}
