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
    /// Signing `requested` (cumulative) would go beyond what this client may sign: its
    /// [`max_spend`](super::SessionClient::max_spend), one
    /// [`max_step`](super::SessionClient::max_step) above the last voucher, or the
    /// channel's deposit. `allowed` is the highest cumulative amount it would sign.
    OverSpendCap {
        /// The cumulative amount asked for.
        requested: u128,
        /// The highest cumulative amount the caps allow.
        allowed: u128,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Challenge(why) => write!(f, "unusable challenge: {why}"),
            ClientError::NoChannel => f.write_str("no channel is open"),
            ClientError::NeedVoucher(why) => write!(f, "bad need-voucher event: {why}"),
            ClientError::Signing(why) => write!(f, "signing failed: {why}"),
            ClientError::OverSpendCap { requested, allowed } => {
                write!(f, "a voucher for {requested} is over this client's spend cap ({allowed})")
            }
        }
    }
}

impl std::error::Error for ClientError {}
