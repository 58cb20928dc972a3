//! The error type of the `tx` module.

use std::fmt;

use alloy::primitives::Address;

use super::TxSignatureKind;

/// Why a Tempo transaction could not be decoded, checked, recovered or signed.
///
/// Decoding never panics: every malformed input ends in one of these variants. See the
/// [module docs](super) for the wire format each check refers to.
#[derive(Debug)]
#[non_exhaustive]
pub enum TxError {
    /// The input was empty.
    Empty,
    /// The input is longer than [`MAX_RAW_TX_LEN`](super::MAX_RAW_TX_LEN).
    TooLarge {
        /// The input's length in bytes.
        len: usize,
    },
    /// The first byte is neither `0x76` (Tempo transaction) nor `0x78` (fee-payer envelope).
    UnknownType(u8),
    /// The RLP structure is malformed (truncated, wrong item kind, non-canonical integer, …).
    Rlp(alloy::rlp::Error),
    /// Bytes follow the transaction's RLP list.
    TrailingBytes {
        /// How many bytes follow the list.
        extra: usize,
    },
    /// The input decodes, but re-encoding the decoded transaction gives other bytes (for
    /// example a secp256k1 `v` of `0`/`1` instead of `27`/`28`), so its hash is ambiguous.
    NonCanonical,
    /// The sender's signature envelope is malformed.
    MalformedSignature(&'static str),
    /// The transaction breaks a structural rule (no calls, a misplaced `CREATE`, an empty
    /// validity window, a missing field, …).
    Invalid(&'static str),
    /// The signature has a high `s` value (EIP-2); Tempo rejects those.
    HighS,
    /// The signature does not recover to any address.
    Recovery,
    /// Recovering the sender of this signature kind is not implemented here.
    Unsupported(TxSignatureKind),
    /// A fee-payer envelope names a sender other than the one its signature recovers to.
    SenderMismatch {
        /// The sender written in the envelope.
        claimed: Address,
        /// The address the signature recovers to.
        recovered: Address,
    },
    /// The transaction is not waiting for a fee payer (it pays its own fees or is already
    /// co-signed), so it cannot be sponsored.
    NotAwaitingSponsor,
    /// The signer failed to sign.
    Signer(alloy::signers::Error),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Empty => f.write_str("transaction is empty"),
            TxError::TooLarge { len } => write!(f, "transaction of {len} bytes is too large"),
            TxError::UnknownType(ty) => write!(f, "unknown transaction type 0x{ty:02x}"),
            TxError::Rlp(e) => write!(f, "malformed transaction rlp: {e}"),
            TxError::TrailingBytes { extra } => write!(f, "{extra} bytes follow the transaction"),
            TxError::NonCanonical => f.write_str("transaction is not canonically encoded"),
            TxError::MalformedSignature(why) => write!(f, "malformed signature: {why}"),
            TxError::Invalid(why) => write!(f, "invalid transaction: {why}"),
            TxError::HighS => f.write_str("signature has a high s value"),
            TxError::Recovery => f.write_str("signature does not recover to an address"),
            TxError::Unsupported(kind) => write!(f, "recovering a {kind} signature is not supported"),
            TxError::SenderMismatch { claimed, recovered } => {
                write!(f, "envelope names sender {claimed} but its signature recovers to {recovered}")
            }
            TxError::NotAwaitingSponsor => f.write_str("transaction is not waiting for a fee payer"),
            TxError::Signer(e) => write!(f, "signing failed: {e}"),
        }
    }
}

impl std::error::Error for TxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TxError::Rlp(e) => Some(e),
            TxError::Signer(e) => Some(e),
            _ => None,
        }
    }
}

impl From<alloy::rlp::Error> for TxError {
    fn from(e: alloy::rlp::Error) -> Self {
        TxError::Rlp(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_are_lowercase_phrases() {
        assert_eq!(TxError::UnknownType(0x02).to_string(), "unknown transaction type 0x02");
        assert_eq!(TxError::TrailingBytes { extra: 3 }.to_string(), "3 bytes follow the transaction");
        assert_eq!(
            TxError::Unsupported(TxSignatureKind::Keychain).to_string(),
            "recovering a keychain signature is not supported"
        );
        let e = TxError::from(alloy::rlp::Error::InputTooShort);
        assert!(std::error::Error::source(&e).is_some());
    }
}
