//! Errors of the client-side half of the scheme: reading challenges and receipts, and
//! writing challenges. (The server side reports [`PaymentError`](crate::PaymentError)s.)

use std::fmt;

/// Why a `WWW-Authenticate` value could not be read as `Payment` challenges.
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeParseError {
    kind: ParseKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ParseKind {
    TooLarge,
    RequestTooLarge,
    TooManyParams,
    Syntax(&'static str),
    Duplicate(String),
    Missing(&'static str),
    Invalid(&'static str),
}

impl ChallengeParseError {
    pub(crate) fn too_large() -> Self {
        ChallengeParseError { kind: ParseKind::TooLarge }
    }

    pub(crate) fn request_too_large() -> Self {
        ChallengeParseError { kind: ParseKind::RequestTooLarge }
    }

    pub(crate) fn too_many_params() -> Self {
        ChallengeParseError { kind: ParseKind::TooManyParams }
    }

    pub(crate) fn syntax(what: &'static str) -> Self {
        ChallengeParseError { kind: ParseKind::Syntax(what) }
    }

    pub(crate) fn duplicate(param: &str) -> Self {
        ChallengeParseError { kind: ParseKind::Duplicate(param.to_owned()) }
    }

    pub(crate) fn missing(param: &'static str) -> Self {
        ChallengeParseError { kind: ParseKind::Missing(param) }
    }

    pub(crate) fn invalid(param: &'static str) -> Self {
        ChallengeParseError { kind: ParseKind::Invalid(param) }
    }
}

impl fmt::Display for ChallengeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseKind::TooLarge => f.write_str("challenge header is larger than 16 KiB"),
            ParseKind::RequestTooLarge => f.write_str("challenge `request` is larger than 16 KiB"),
            ParseKind::TooManyParams => f.write_str("challenge has too many parameters"),
            ParseKind::Syntax(what) => write!(f, "malformed challenge: {what}"),
            ParseKind::Duplicate(p) => write!(f, "duplicate challenge parameter `{p}`"),
            ParseKind::Missing(p) => write!(f, "challenge is missing `{p}`"),
            ParseKind::Invalid(p) => write!(f, "challenge has an invalid `{p}`"),
        }
    }
}

impl std::error::Error for ChallengeParseError {}

/// Why a challenge could not be written as a header value: one of its parameters holds
/// a control character (CR, LF, NUL, …), which no quoted-string can carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeEncodeError {
    param: &'static str,
}

impl ChallengeEncodeError {
    pub(crate) fn new(param: &'static str) -> Self {
        ChallengeEncodeError { param }
    }

    /// The name of the offending parameter (`"description"`, `"realm"`, …).
    pub fn param(&self) -> &'static str {
        self.param
    }
}

impl fmt::Display for ChallengeEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "challenge parameter `{}` contains a control character", self.param)
    }
}

impl std::error::Error for ChallengeEncodeError {}

/// Why a `Payment-Receipt` value could not be read.
#[derive(Debug)]
pub struct ReceiptParseError {
    json: Option<serde_json::Error>,
}

impl ReceiptParseError {
    pub(crate) fn encoding() -> Self {
        ReceiptParseError { json: None }
    }

    pub(crate) fn json(error: serde_json::Error) -> Self {
        ReceiptParseError { json: Some(error) }
    }
}

impl fmt::Display for ReceiptParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.json {
            None => f.write_str("receipt is not base64url"),
            Some(e) => write!(f, "receipt is not a valid receipt object: {e}"),
        }
    }
}

impl std::error::Error for ReceiptParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.json.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_are_lowercase_phrases() {
        assert_eq!(ChallengeParseError::missing("id").to_string(), "challenge is missing `id`");
        assert_eq!(ChallengeParseError::duplicate("realm").to_string(), "duplicate challenge parameter `realm`");
        let e = ChallengeEncodeError::new("description");
        assert_eq!(e.param(), "description");
        assert_eq!(e.to_string(), "challenge parameter `description` contains a control character");
        assert_eq!(ReceiptParseError::encoding().to_string(), "receipt is not base64url");
    }
}
