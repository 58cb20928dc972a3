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
/// use tollgate::scheme::problem_body;
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
    fn leaves_out_a_missing_challenge_id() {
        let error = PaymentError::new(PaymentErrorKind::Unavailable, "store \"down\"");
        let json: serde_json::Value = serde_json::from_slice(&problem_body(&error, None)).unwrap();
        assert_eq!(json["status"], 503);
        assert_eq!(json["detail"], "store \"down\"");
        assert!(json.get("challengeId").is_none());
    }
}
