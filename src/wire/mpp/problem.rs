//! RFC 9457 problem details for refused payments, as mppx writes them.

use bytes::Bytes;
use serde::Serialize;

use crate::error::PaymentError;

/// The media type of [`problem_body`]: `application/problem+json`.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge_id: Option<&'a str>,
}

/// The problem JSON for `error`:
/// `{"type":"https://paymentauth.org/problems/<type>","title":…,"status":…,"detail":…,"challengeId":…}`.
///
/// `challenge_id` is the id of the **fresh** challenge sent in the same response; it is
/// left out when `None` (server-side failures carry no challenge).
///
/// ```
/// use tollgate::{PaymentError, PaymentErrorKind};
/// use tollgate::wire::mpp::problem_body;
///
/// let error = PaymentError::new(PaymentErrorKind::PaymentExpired, "challenge expired");
/// let body = problem_body(&error, Some("abc"));
/// assert!(body.starts_with(br#"{"type":"https://paymentauth.org/problems/payment-expired""#));
/// ```
pub fn problem_body(error: &PaymentError, challenge_id: Option<&str>) -> Bytes {
    let kind = error.kind();
    let problem = Problem {
        kind: format!("https://paymentauth.org/problems/{}", kind.problem_type()),
        title: kind.title(),
        status: kind.status().as_u16(),
        detail: error.detail(),
        challenge_id,
    };
    Bytes::from(serde_json::to_vec(&problem).expect("strings and numbers always serialize"))
}

/// An RFC 9457 problem document a `402` carries, with room for extension members (RFC 9457
/// §3.2): a wire form that travels in the body (x402's `x402Version`, `accepts`, `error`)
/// adds its members here, so one response carries one problem whatever forms it speaks.
///
/// Without extensions it serializes byte for byte as [`problem_body`].
///
/// ```
/// use serde_json::json;
/// use tollgate::{PaymentError, PaymentErrorKind};
/// use tollgate::wire::mpp::{ProblemDocument, problem_body};
///
/// let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
/// assert_eq!(ProblemDocument::new(&error, Some("abc")).to_bytes(), problem_body(&error, Some("abc")));
/// let with_x402 = ProblemDocument::new(&error, Some("abc")).extension("x402Version", json!(2));
/// assert!(with_x402.to_bytes().ends_with(br#""challengeId":"abc","x402Version":2}"#));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDocument {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge_id: Option<String>,
    #[serde(flatten)]
    extensions: serde_json::Map<String, serde_json::Value>,
}

/// The members [`ProblemDocument`] writes itself; an extension may not replace them.
const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "challengeId"];

impl ProblemDocument {
    /// The problem for `error`, naming the fresh challenge `challenge_id` when there is one.
    pub fn new(error: &PaymentError, challenge_id: Option<&str>) -> Self {
        let kind = error.kind();
        ProblemDocument {
            kind: format!("https://paymentauth.org/problems/{}", kind.problem_type()),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: error.detail().to_owned(),
            challenge_id: challenge_id.map(str::to_owned),
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds (or replaces) the extension member `name`. A standard member's name (`type`,
    /// `title`, `status`, `detail`, `challengeId`) is ignored: a form cannot rewrite what
    /// the problem says.
    pub fn extension(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        let name = name.into();
        if !STANDARD_MEMBERS.contains(&name.as_str()) {
            self.extensions.insert(name, value);
        }
        self
    }

    /// The extension members (written after the standard ones).
    pub fn extensions(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.extensions
    }

    /// The JSON body (`application/problem+json`).
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("strings, numbers and JSON values always serialize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PaymentErrorKind;

    #[test]
    fn writes_the_mppx_shape() {
        let error = PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed");
        let body = problem_body(&error, Some("cid"));
        assert_eq!(
            body,
            concat!(
                r#"{"type":"https://paymentauth.org/problems/session/channel-finalized","#,
                r#""title":"Channel Closed","status":410,"detail":"channel is closed","challengeId":"cid"}"#
            )
        );
    }

    #[test]
    fn a_document_carries_x402_members_after_the_mpp_ones_which_stay_byte_identical() {
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        for id in [Some("cid"), None] {
            assert_eq!(ProblemDocument::new(&error, id).to_bytes(), problem_body(&error, id));
        }
        let accepts = serde_json::json!([{ "scheme": "exact", "network": "eip155:4217", "amount": "10" }]);
        let document = ProblemDocument::new(&error, Some("cid"))
            .extension("x402Version", serde_json::json!(1))
            .extension("accepts", accepts.clone())
            .extension("error", serde_json::json!("X-PAYMENT header is required"))
            .extension("status", serde_json::json!(200))
            .extension("type", serde_json::json!("about:blank"));
        let mpp = problem_body(&error, Some("cid"));
        let bytes = document.to_bytes();
        assert_eq!(bytes[..mpp.len() - 1], mpp[..mpp.len() - 1], "the MPP members first, unchanged");
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["x402Version"], 1);
        assert_eq!(json["accepts"][0], accepts[0], "LibertAI's client reads accepts[0]");
        assert_eq!(json["error"], "X-PAYMENT header is required");
        assert_eq!((json["status"].clone(), json["type"].clone()), (402.into(), problem_type(&error)));
        assert_eq!(document.extensions().len(), 3, "standard members cannot be replaced");
    }

    fn problem_type(error: &PaymentError) -> serde_json::Value {
        format!("https://paymentauth.org/problems/{}", error.kind().problem_type()).into()
    }

    #[test]
    fn leaves_out_a_missing_challenge_id() {
        let error = PaymentError::new(PaymentErrorKind::Unavailable, "store \"down\"");
        let json: serde_json::Value = serde_json::from_slice(&problem_body(&error, None)).unwrap();
        assert_eq!(json["status"], 503);
        assert_eq!(json["detail"], "store \"down\"");
        assert!(json.get("challengeId").is_none());
    }
}
