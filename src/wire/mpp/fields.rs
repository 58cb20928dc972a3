//! The fields of a challenge that its id binds.

/// The fields of a challenge that its HMAC id binds (§1.3 of the Payment scheme), in
/// slot order. `description` is not among them: it is display text only.
///
/// Borrowed so a server can compute an id before it builds the [`Challenge`]; an
/// existing challenge gives them with [`Challenge::fields`].
///
/// See the [module docs](super) for an example.
///
/// [`Challenge`]: super::Challenge
/// [`Challenge::fields`]: super::Challenge::fields
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeFields<'a> {
    /// The protection space, usually the host name.
    pub realm: &'a str,
    /// The payment method, such as `tempo`.
    pub method: &'a str,
    /// The intent, such as `charge` or `session`.
    pub intent: &'a str,
    /// The base64url `request`, as [`encode_request`](super::encode_request) writes it.
    pub request: &'a str,
    /// The RFC 3339 expiry, if any.
    pub expires: Option<&'a str>,
    /// The request-body digest, if any.
    pub digest: Option<&'a str>,
    /// The base64url `opaque` correlation data, if any.
    pub opaque: Option<&'a str>,
}
