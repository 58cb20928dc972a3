//! Why an x402 payment was refused or could not be settled.

use std::borrow::Cow;
use std::fmt;

use crate::error::{PaymentError, PaymentErrorKind};

/// Why an x402 payment was refused, or its settlement failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X402Error {
    kind: X402ErrorKind,
    detail: Cow<'static, str>,
}

/// The kind of an [`X402Error`]. Each has the x402 error reason
/// ([`reason`](Self::reason)) a facilitator would answer and the Payment problem kind
/// ([`payment_kind`](Self::payment_kind)) a layer answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum X402ErrorKind {
    /// The payload does not have the offer's shape (scheme, network, asset, a value beyond
    /// what an amount holds).
    InvalidPayload,
    /// The signature is malformed, malleable (high s), or was not made by `from` over this
    /// token's domain (wrong name, version, chain or contract included).
    InvalidSignature,
    /// `to` (or the Permit spender) is not the offer's `payTo`.
    RecipientMismatch,
    /// The signed value breaks the offer's value rule.
    ValueMismatch,
    /// `validAfter` has not passed yet.
    NotYetValid,
    /// `validBefore` (or the Permit deadline) has passed, is too close to settle in time, or
    /// lies further ahead than the offer's `maxTimeoutSeconds` (plus two minutes of clock
    /// skew): every client signs exactly that window.
    Expired,
    /// The authorization nonce was used already: on chain, or claimed by a request here or on
    /// another instance sharing the store.
    NonceUsed,
    /// The Permit nonce is not the owner's next nonce on the token.
    NonceMismatch,
    /// The payer holds less than the signed value.
    InsufficientFunds,
    /// The chain, the store or the facilitator could not be asked: nothing is known, nothing
    /// was claimed. Answered without a fresh offer, so the client does not pay twice.
    Unavailable,
    /// Settlement was refused (the transaction reverted, the facilitator said no).
    SettlementFailed,
    /// Settlement was sent but its outcome is not known yet (kept as pending; the token's
    /// nonce state decides later). Never retried blindly.
    SettlementPending,
}

impl X402ErrorKind {
    /// The x402 error reason (`invalidReason` / `errorReason`).
    pub fn reason(self) -> &'static str {
        use X402ErrorKind::*;
        match self {
            InvalidPayload => "invalid_payload",
            InvalidSignature => "invalid_exact_evm_payload_signature",
            RecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch",
            ValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
            NotYetValid => "invalid_exact_evm_payload_authorization_valid_after",
            Expired => "invalid_exact_evm_payload_authorization_valid_before",
            NonceUsed | NonceMismatch => "invalid_transaction_state",
            InsufficientFunds => "insufficient_funds",
            Unavailable => "unexpected_verify_error",
            SettlementFailed | SettlementPending => "unexpected_settle_error",
        }
    }

    /// The Payment problem kind a layer answers with.
    pub fn payment_kind(self) -> PaymentErrorKind {
        use X402ErrorKind::*;
        match self {
            InvalidPayload => PaymentErrorKind::InvalidPayload,
            InvalidSignature | RecipientMismatch | NonceUsed | NonceMismatch | SettlementFailed => {
                PaymentErrorKind::VerificationFailed
            }
            ValueMismatch | InsufficientFunds => PaymentErrorKind::PaymentInsufficient,
            NotYetValid | Expired => PaymentErrorKind::PaymentExpired,
            Unavailable | SettlementPending => PaymentErrorKind::Unavailable,
        }
    }
}

impl X402Error {
    /// An error of `kind`.
    pub fn new(kind: X402ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        X402Error { kind, detail: detail.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> X402ErrorKind {
        self.kind
    }

    /// A human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for X402Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.detail)
    }
}

impl std::error::Error for X402Error {}

impl From<X402Error> for PaymentError {
    fn from(e: X402Error) -> Self {
        PaymentError::new(e.kind.payment_kind(), e.detail)
    }
}
