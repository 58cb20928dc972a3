//! Typed errors: why a request was refused ([`PaymentError`]) and why a metered body ended
//! early ([`BudgetExhausted`]).

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;

/// A boxed error, as used by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request was refused.
///
/// The layer turns it into a response: a payment problem becomes a `402` (or the problem
/// type's own status) with a fresh challenge and an RFC 9457 `application/problem+json`
/// body; a server-side failure (a store or chain that cannot answer) becomes a 5xx with
/// **no** challenge, so the client does not pay twice. The error is also put into the
/// rejection response's extensions, so outer layers can inspect it.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentError {
    kind: PaymentErrorKind,
    detail: Cow<'static, str>,
}

impl PaymentError {
    /// An error of `kind` with a human-readable `detail`.
    pub fn new(kind: PaymentErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        PaymentError { kind, detail: detail.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> PaymentErrorKind {
        self.kind
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.title().to_ascii_lowercase(), self.detail)
    }
}

impl std::error::Error for PaymentError {}

/// The kind of a [`PaymentError`]: one per problem type of the Payment scheme
/// (`https://paymentauth.org/problems/<type>`), plus server-side failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PaymentErrorKind {
    /// No credential was sent.
    PaymentRequired,
    /// The credential is not valid base64url JSON of the right shape.
    MalformedCredential,
    /// The echoed challenge was not issued by this server, or does not match this route.
    InvalidChallenge,
    /// The echoed challenge has expired.
    PaymentExpired,
    /// The payment proof is invalid.
    VerificationFailed,
    /// The amount paid is too low.
    PaymentInsufficient,
    /// The payload does not fit the method's schema.
    InvalidPayload,
    /// The credential names a method or intent this route does not offer.
    MethodUnsupported,
    /// The request is malformed (for example, several credentials).
    BadRequest,
    /// A voucher signature is invalid.
    InvalidSignature,
    /// A voucher was signed by someone other than the channel's signer.
    SignerMismatch,
    /// A voucher exceeds the channel's deposit.
    AmountExceedsDeposit,
    /// A voucher raises the cumulative amount by less than the minimum delta.
    DeltaTooSmall,
    /// The channel has less available than the request costs.
    InsufficientBalance,
    /// The channel is unknown (or not funded on chain).
    ChannelNotFound,
    /// The channel is closed, or a close is pending.
    ChannelFinalized,
    /// The request body is larger than the layer reads to price it.
    PayloadTooLarge,
    /// The route has no price: a configuration error, answered without a challenge.
    Unpriced,
    /// A store or chain failed; answered with no challenge so the client does not pay twice.
    Unavailable,
    /// The request body did not arrive within the layer's read timeout.
    RequestTimeout,
    /// The inner service switched protocols on a paid route (what follows cannot be
    /// metered); answered `501`, nothing charged.
    UpgradeRefused,
}

impl PaymentErrorKind {
    /// The HTTP status of a response for this kind.
    pub fn status(self) -> StatusCode {
        use PaymentErrorKind::*;
        match self {
            MethodUnsupported | BadRequest => StatusCode::BAD_REQUEST,
            ChannelNotFound | ChannelFinalized => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UpgradeRefused => StatusCode::NOT_IMPLEMENTED,
            Unpriced => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::PAYMENT_REQUIRED,
        }
    }

    /// The problem type suffix after `https://paymentauth.org/problems/`.
    pub fn problem_type(self) -> &'static str {
        use PaymentErrorKind::*;
        match self {
            PaymentRequired => "payment-required",
            MalformedCredential => "malformed-credential",
            InvalidChallenge => "invalid-challenge",
            PaymentExpired => "payment-expired",
            VerificationFailed => "verification-failed",
            PaymentInsufficient => "payment-insufficient",
            InvalidPayload => "invalid-payload",
            MethodUnsupported => "method-unsupported",
            BadRequest | PayloadTooLarge | RequestTimeout => "bad-request",
            InvalidSignature => "session/invalid-signature",
            SignerMismatch => "session/signer-mismatch",
            AmountExceedsDeposit => "session/amount-exceeds-deposit",
            DeltaTooSmall => "session/delta-too-small",
            InsufficientBalance => "session/insufficient-balance",
            ChannelNotFound => "session/channel-not-found",
            ChannelFinalized => "session/channel-finalized",
            Unpriced | Unavailable | UpgradeRefused => "internal-payment-error",
        }
    }

    /// The problem title, as the reference SDK writes it.
    pub fn title(self) -> &'static str {
        use PaymentErrorKind::*;
        match self {
            PaymentRequired => "Payment Required",
            MalformedCredential => "Malformed Credential",
            InvalidChallenge => "Invalid Challenge",
            PaymentExpired => "Payment Expired",
            VerificationFailed => "Verification Failed",
            PaymentInsufficient => "Payment Insufficient",
            InvalidPayload => "Invalid Payload",
            MethodUnsupported => "Method Unsupported",
            BadRequest => "Bad Request",
            PayloadTooLarge => "Payload Too Large",
            InvalidSignature => "Invalid Signature",
            SignerMismatch => "Signer Mismatch",
            AmountExceedsDeposit => "Amount Exceeds Deposit",
            DeltaTooSmall => "Delta Too Small",
            InsufficientBalance => "Insufficient Balance",
            ChannelNotFound => "Channel Not Found",
            ChannelFinalized => "Channel Closed",
            Unpriced => "Unpriced Route",
            Unavailable => "Payment Backend Unavailable",
            RequestTimeout => "Request Timeout",
            UpgradeRefused => "Upgrade Not Metered",
        }
    }

    /// Whether the response carries a fresh challenge. Server-side failures do not: the
    /// client must not be asked to pay again for the server's fault.
    pub fn offers_challenge(self) -> bool {
        use PaymentErrorKind::*;
        !matches!(self, Unpriced | Unavailable | PayloadTooLarge | RequestTimeout | UpgradeRefused)
    }
}

/// The fewest bytes of HMAC secret a [`PaymentLayer`](crate::PaymentLayer) takes: 256 bits,
/// the size of the HMAC-SHA256 output, so guessing the key is no easier than forging an id.
pub const MIN_SECRET_LEN: usize = 32;

/// A [`PaymentLayer`](crate::PaymentLayer) configuration the layer refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The HMAC secret has `len` bytes, fewer than [`MIN_SECRET_LEN`].
    SecretTooShort {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SecretTooShort { len } => {
                write!(f, "the HMAC secret has {len} bytes; it needs at least {MIN_SECRET_LEN} random bytes")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The error a [`MeteredBody`](crate::MeteredBody) yields when the paid budget ran out and
/// the stream could not be ended cleanly (a non-SSE body of a one-shot payment, or a paused
/// session whose deadline passed on a body with no clean ending).
///
/// It reaches callers as a [`BoxError`]; downcast to tell it apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetExhausted;

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("paid budget exhausted")
    }
}

impl std::error::Error for BudgetExhausted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_problem_table() {
        use PaymentErrorKind::*;
        assert_eq!(PaymentRequired.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(MethodUnsupported.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ChannelNotFound.status(), StatusCode::GONE);
        assert_eq!(ChannelFinalized.problem_type(), "session/channel-finalized");
        assert_eq!(Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!Unavailable.offers_challenge());
        assert!(ChannelFinalized.offers_challenge());
    }

    #[test]
    fn display_is_lowercase_with_detail() {
        let e = PaymentError::new(PaymentErrorKind::PaymentExpired, "challenge expired");
        assert_eq!(e.to_string(), "payment expired: challenge expired");
    }
}
