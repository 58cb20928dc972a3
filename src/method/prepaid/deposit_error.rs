//! [`DepositError`]: why a deposit was not credited.

use std::fmt;

use http::StatusCode;

use crate::error::BoxError;

/// Why a deposit was not credited. Nothing was credited in any case.
#[derive(Debug)]
#[non_exhaustive]
pub enum DepositError {
    /// Not a transaction hash (`0x` + 64 hex digits).
    BadHash,
    /// The chain has no receipt for it yet: try again later.
    NotMined,
    /// Mined, with fewer confirmations than required yet: try again later.
    NotConfirmed {
        /// The confirmations it has.
        confirmations: u64,
        /// The confirmations it needs.
        needed: u64,
    },
    /// The transaction failed.
    Reverted,
    /// It transferred another token to the treasury.
    WrongToken,
    /// It transferred the token to someone else than the treasury.
    WrongRecipient,
    /// It holds no transfer to the treasury.
    NoTransfer,
    /// Its transfers to the treasury come from several senders: whose balance is unclear.
    SeveralSenders,
    /// Zero, or more than the store keeps exactly.
    TooLarge,
    /// The chain or the store failed: try again.
    Unavailable(BoxError),
}

impl DepositError {
    /// The HTTP status of a response refusing the deposit: `404` for one not mined or
    /// confirmed yet (with a retry hint), `503` when the chain or store failed, `400`
    /// otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            DepositError::NotMined | DepositError::NotConfirmed { .. } => StatusCode::NOT_FOUND,
            DepositError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short machine-readable code (the problem type's last segment).
    pub fn code(&self) -> &'static str {
        match self {
            DepositError::BadHash => "bad-tx-hash",
            DepositError::NotMined => "tx-not-found",
            DepositError::NotConfirmed { .. } => "tx-not-confirmed",
            DepositError::Reverted => "tx-reverted",
            DepositError::WrongToken => "wrong-token",
            DepositError::WrongRecipient => "wrong-recipient",
            DepositError::NoTransfer => "no-transfer",
            DepositError::SeveralSenders => "several-senders",
            DepositError::TooLarge => "bad-amount",
            DepositError::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for DepositError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepositError::BadHash => f.write_str("not a transaction hash"),
            DepositError::NotMined => f.write_str("the transaction is not mined yet"),
            DepositError::NotConfirmed { confirmations, needed } => {
                write!(f, "the transaction has {confirmations} of {needed} confirmations")
            }
            DepositError::Reverted => f.write_str("the transaction failed"),
            DepositError::WrongToken => f.write_str("the transaction transfers another token"),
            DepositError::WrongRecipient => {
                f.write_str("the transaction transfers to another address than the treasury")
            }
            DepositError::NoTransfer => f.write_str("the transaction holds no transfer to the treasury"),
            DepositError::SeveralSenders => f.write_str("the transaction's transfers come from several senders"),
            DepositError::TooLarge => f.write_str("the deposit amount is zero or too large"),
            DepositError::Unavailable(e) => write!(f, "the chain or store is unavailable: {e}"),
        }
    }
}

impl std::error::Error for DepositError {}
