//! The challenge a 402 carries in `WWW-Authenticate`, which credentials echo back.

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::ChallengeFields;
use super::error::{ChallengeEncodeError, ChallengeParseError};
use super::params::{self, Params};
use super::quoting;
use super::request::decode_request;
use crate::error::{PaymentError, PaymentErrorKind};

/// A `Payment` challenge: one offer of a method and intent, with its HMAC-bound `id`.
///
/// The same struct is the `challenge` object echoed inside a [`Credential`]: serde uses
/// the wire names and leaves out absent optional fields. When deserialized, `opaque` also
/// accepts the legacy object form older mppx clients echo, normalized to its base64url.
///
/// See the [module docs](super) for an example.
///
/// [`Credential`]: super::Credential
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// The HMAC id (see [`ChallengeSigner`](super::ChallengeSigner)).
    pub id: String,
    /// The protection space, usually the host name.
    pub realm: String,
    /// The payment method (`1*LOWERALPHA`), such as `tempo`.
    pub method: String,
    /// The intent (`1*(ALPHA / DIGIT / "-")`), such as `charge` or `session`.
    pub intent: String,
    /// The request object as sent: base64url of its JCS JSON (see
    /// [`decode_request`](Self::decode_request)).
    pub request: String,
    /// Display text; not bound by the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The request-body digest, such as `sha-256=…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The RFC 3339 expiry (see [`check_expires`](super::check_expires)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Server correlation data: base64url of the JCS JSON of a flat string map.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::credential::deserialize_opaque"
    )]
    pub opaque: Option<String>,
}

impl Challenge {
    /// The `WWW-Authenticate` value, with mppx's parameter order
    /// `id, realm, method, intent, request, [description], [digest], [expires], [opaque]`.
    ///
    /// Code points above U+00FF are written as `\uXXXX` (as mppx does; its clients undo
    /// it), U+0080 to U+00FF as Latin-1 bytes. Fails if a field holds a control character.
    pub fn to_header_value(&self) -> Result<HeaderValue, ChallengeEncodeError> {
        Challenge::header_value(&self.id, &self.fields(), self.description.as_deref())
    }

    /// [`to_header_value`](Self::to_header_value) of the challenge with this id, these
    /// fields and this description, without building it.
    pub(crate) fn header_value(
        id: &str,
        fields: &ChallengeFields<'_>,
        description: Option<&str>,
    ) -> Result<HeaderValue, ChallengeEncodeError> {
        let all = [
            ("id", Some(id)),
            ("realm", Some(fields.realm)),
            ("method", Some(fields.method)),
            ("intent", Some(fields.intent)),
            ("request", Some(fields.request)),
            ("description", description),
            ("digest", fields.digest),
            ("expires", fields.expires),
            ("opaque", fields.opaque),
        ];
        let (mut pairs, mut present) = ([("", ""); 9], 0);
        for (key, value) in all {
            if let Some(value) = value {
                pairs[present] = (key, value);
                present += 1;
            }
        }
        Ok(quoting::to_header_value(quoting::serialize(&pairs[..present])?))
    }

    /// Reads every `Payment` challenge from `WWW-Authenticate` values, for clients.
    ///
    /// Takes separate header lines and comma-merged lines alike; other schemes are
    /// skipped, unknown parameters ignored. Any malformed `Payment` challenge fails the
    /// whole call. No `Payment` challenge at all gives an empty `Vec`. `request` is not
    /// decoded here; see [`decode_request`](Self::decode_request).
    ///
    /// ```
    /// use http::{HeaderMap, header::WWW_AUTHENTICATE};
    /// use tollgate::wire::mpp::Challenge;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.append(WWW_AUTHENTICATE, r#"Bearer realm="x", Payment id="a", realm="api.example.com", method="tempo", intent="charge", request="e30""#.parse().unwrap());
    /// let challenges = Challenge::parse_all(headers.get_all(WWW_AUTHENTICATE)).unwrap();
    /// assert_eq!(challenges[0].intent, "charge");
    /// ```
    pub fn parse_all<'a>(
        values: impl IntoIterator<Item = &'a HeaderValue>,
    ) -> Result<Vec<Challenge>, ChallengeParseError> {
        let mut challenges = Vec::new();
        for value in values {
            for params in params::parse_header(value)? {
                challenges.push(Challenge::from_params(params)?);
            }
        }
        Ok(challenges)
    }

    fn from_params(mut p: Params) -> Result<Self, ChallengeParseError> {
        let mut required = |name: &'static str| p.take(name).ok_or(ChallengeParseError::missing(name));
        let (id, realm, method) = (required("id")?, required("realm")?, required("method")?);
        let (intent, request) = (required("intent")?, required("request")?);
        if id.is_empty() {
            return Err(ChallengeParseError::invalid("id"));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ChallengeParseError::invalid("method"));
        }
        if intent.is_empty() || !intent.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ChallengeParseError::invalid("intent"));
        }
        Ok(Challenge {
            id,
            realm,
            method,
            intent,
            request,
            description: p.take("description"),
            digest: p.take("digest"),
            expires: p.take("expires"),
            opaque: p.take("opaque"),
        })
    }

    /// Decodes `request` (leniently, see [`decode_request`](super::decode_request)).
    ///
    /// Errors are [`InvalidChallenge`](PaymentErrorKind::InvalidChallenge): a challenge
    /// this server signed always decodes, so one that does not was not issued here.
    pub fn decode_request(&self) -> Result<serde_json::Value, PaymentError> {
        decode_request(&self.request)
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidChallenge, e.detail().to_owned()))
    }

    /// The fields its id binds, for [`ChallengeSigner`](super::ChallengeSigner).
    pub fn fields(&self) -> ChallengeFields<'_> {
        ChallengeFields {
            realm: &self.realm,
            method: &self.method,
            intent: &self.intent,
            request: &self.request,
            expires: self.expires.as_deref(),
            digest: self.digest.as_deref(),
            opaque: self.opaque.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::WWW_AUTHENTICATE;

    fn sample() -> Challenge {
        Challenge {
            id: "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4".into(),
            realm: "api.example.com".into(),
            method: "tempo".into(),
            intent: "charge".into(),
            request: "eyJhbW91bnQiOiIxMDAwMDAwIn0".into(),
            description: Some("Pay \"now\" \u{2014} café".into()),
            digest: None,
            expires: Some("2026-01-01T00:05:00.000Z".into()),
            opaque: Some("e30".into()),
        }
    }

    #[test]
    fn writes_mppx_order_and_escapes() {
        let value = sample().to_header_value().unwrap();
        let expected = concat!(
            r#"Payment id="X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4", realm="api.example.com", "#,
            r#"method="tempo", intent="charge", request="eyJhbW91bnQiOiIxMDAwMDAwIn0", "#,
            r#"description="Pay \"now\" \u2014 caf"#,
            "\u{e9}",
            r#"", expires="2026-01-01T00:05:00.000Z", opaque="e30""#,
        );
        assert_eq!(params::header_text(value.as_bytes()), expected);
        assert_eq!(value.as_bytes().iter().filter(|&&b| b == 0xe9).count(), 1, "Latin-1 byte");
    }

    #[test]
    fn refuses_control_characters() {
        let c = Challenge { description: Some("a\nb".into()), ..sample() };
        assert_eq!(c.to_header_value().unwrap_err().param(), "description");
    }

    #[test]
    fn round_trips_through_a_header() {
        let value = sample().to_header_value().unwrap();
        assert_eq!(Challenge::parse_all([&value]).unwrap(), vec![sample()]);
    }

    #[test]
    fn reads_several_challenges_per_line_and_per_header() {
        let a = sample();
        let b = Challenge { id: "b".into(), intent: "session".into(), description: None, ..sample() };
        let merged = format!(
            "{}, Bearer realm=\"x\", {}",
            params::header_text(a.to_header_value().unwrap().as_bytes()),
            params::header_text(b.to_header_value().unwrap().as_bytes()),
        );
        let merged = quoting::to_header_value(merged);
        assert_eq!(Challenge::parse_all([&merged]).unwrap(), vec![a.clone(), b.clone()]);

        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
        headers.append(WWW_AUTHENTICATE, b.to_header_value().unwrap());
        headers.append(WWW_AUTHENTICATE, a.to_header_value().unwrap());
        let all = Challenge::parse_all(headers.get_all(WWW_AUTHENTICATE)).unwrap();
        assert_eq!(all, vec![b, a]);
    }

    #[test]
    fn ignores_unknown_params_and_reads_any_case() {
        let value = HeaderValue::from_static(
            r#"PAYMENT ID=a, Realm="r", method=tempo, intent="x-1", request="e30", header="Payment-Authorization""#,
        );
        let c = &Challenge::parse_all([&value]).unwrap()[0];
        assert_eq!((c.id.as_str(), c.intent.as_str(), c.opaque.as_deref()), ("a", "x-1", None));
        assert!(Challenge::parse_all([&HeaderValue::from_static("Bearer x")]).unwrap().is_empty());
    }

    #[test]
    fn refuses_missing_or_invalid_required_params() {
        let cases = [
            (r#"Payment realm="r", method="m", intent="i", request="e30""#, "challenge is missing `id`"),
            (r#"Payment id="", realm="r", method="m", intent="i", request="e30""#, "challenge has an invalid `id`"),
            (
                r#"Payment id="a", realm="r", method="Tempo", intent="i", request="e30""#,
                "challenge has an invalid `method`",
            ),
            (
                r#"Payment id="a", realm="r", method="m", intent="a_b", request="e30""#,
                "challenge has an invalid `intent`",
            ),
            (r#"Payment id="a", realm="r", method="m", intent="i""#, "challenge is missing `request`"),
            (r#"Payment id="a", id="b""#, "duplicate challenge parameter `id`"),
        ];
        for (header, message) in cases {
            let e = Challenge::parse_all([&HeaderValue::from_static(header)]).unwrap_err();
            assert_eq!(e.to_string(), message, "{header}");
        }
    }

    #[test]
    fn decode_request_errors_are_invalid_challenge() {
        assert_eq!(sample().decode_request().unwrap(), serde_json::json!({"amount": "1000000"}));
        let c = Challenge { request: "W10".into(), ..sample() }; // `[]`
        assert_eq!(c.decode_request().unwrap_err().kind(), PaymentErrorKind::InvalidChallenge);
    }

    #[test]
    fn serde_uses_wire_names_and_skips_absent_fields() {
        let c = Challenge { description: None, opaque: None, ..sample() };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 6);
        assert_eq!(serde_json::from_value::<Challenge>(json).unwrap(), c);
    }
}
