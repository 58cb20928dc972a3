//! The paying side of Tempo sessions: answers a `402` by opening a channel, signs
//! vouchers as a stream asks for them, tops up and closes.
//!
//! The client is transport-agnostic: it turns a [`Challenge`](crate::wire::mpp::Challenge) and
//! an action into an `Authorization` header value; sending it is the caller's (hyper,
//! reqwest, a tower service). Transactions use the account's protocol nonce, which the
//! caller reads from the chain ([`TxParams`]).

mod error;
mod session;

pub use error::ClientError;
pub use session::{SessionClient, TxParams};

#[cfg(test)]
mod tests;
