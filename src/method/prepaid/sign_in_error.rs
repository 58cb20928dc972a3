//! [`SignInError`]: why a SIWX proof was refused.

use std::fmt;

use crate::store::StoreError;

/// Why a sign-in was refused. Every kind but [`Unavailable`](SignInError::Unavailable)
/// is the client's: answered `402` with a fresh challenge.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignInError {
    /// The header is not base64 JSON of a SIWX proof.
    Malformed,
    /// The proof names another domain.
    Domain,
    /// The proof names another URI.
    Uri,
    /// The chain is not one the challenge offered.
    Chain,
    /// Not a nonce this server issued, or the proof changed its window.
    Nonce,
    /// The challenge has expired.
    Expired,
    /// The nonce was spent already (a replayed proof).
    Replayed,
    /// The signature does not verify, or was made by another address than the one named.
    Signature,
    /// A signature scheme or version this server does not verify (EIP-1271 and EIP-6492
    /// smart wallets, for now).
    Unsupported,
    /// The store failed: the sign-in may be retried with a fresh challenge.
    Unavailable(StoreError),
}

impl fmt::Display for SignInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignInError::Malformed => "the SIGN-IN-WITH-X header is not base64 JSON of a SIWX proof",
            SignInError::Domain => "the proof was signed for another domain",
            SignInError::Uri => "the proof was signed for another URI",
            SignInError::Chain => "the proof's chain is not one this server supports",
            SignInError::Nonce => "the proof's nonce was not issued by this server, or its window was changed",
            SignInError::Expired => "the challenge has expired: sign a fresh one",
            SignInError::Replayed => "the challenge's nonce was used already: sign a fresh one",
            SignInError::Signature => "the signature does not verify for the address named",
            SignInError::Unsupported => "only EIP-191 signatures of CAIP-122 version 1 messages are verified",
            SignInError::Unavailable(_) => "the sign-in store is unavailable",
        })
    }
}

impl std::error::Error for SignInError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SignInError::Unavailable(e) => Some(e),
            _ => None,
        }
    }
}
