//! [`ClientError`].

use std::fmt;

/// Why the paying client could not build a credential.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The challenge is not a Tempo session challenge this client can answer.
    Challenge(String),
    /// No channel is open yet (open first).
    NoChannel,
    /// A `payment-need-voucher` event could not be read.
    NeedVoucher(String),
    /// Signing failed.
    Signing(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Challenge(why) => write!(f, "unusable challenge: {why}"),
            ClientError::NoChannel => f.write_str("no channel is open"),
            ClientError::NeedVoucher(why) => write!(f, "bad need-voucher event: {why}"),
            ClientError::Signing(why) => write!(f, "signing failed: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}
