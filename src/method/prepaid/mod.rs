//! Prepaid balances (feature `prepaid`): deposit once on chain, sign in with the wallet,
//! then pay per use from the balance.
//!
//! 1. **Deposit.** The payer sends the configured token to the treasury and posts the
//!    transaction hash (`POST /v1/deposits`). [`Deposits`] reads the receipt (successful,
//!    confirmed, a `Transfer` of the token to the treasury) and credits the sender once
//!    per hash, atomically in the store ([`ChannelStore::credit`](crate::store::ChannelStore::credit)).
//! 2. **Sign in.** A `402` of the [`Prepaid`] method (or of `POST /v1/sign-in`) carries a
//!    sign-in-with-x challenge ([`Siwx`]); the wallet signs its EIP-4361 message and the
//!    client posts the proof in `SIGN-IN-WITH-X` to `/v1/sign-in`, which answers a
//!    short-lived session token ([`SessionTokens`], `tgs1.…`).
//! 3. **Pay per use.** Requests carry `Authorization: Bearer <token>` (an OpenAI SDK's
//!    `apiKey`). [`Prepaid`] grants them on the balance; the metering body debits what
//!    was delivered and writes a [`UsageRecord`] in the same store step, and ends a stream
//!    cleanly when the balance runs out.
//! 4. **Look.** `GET /v1/balance` and `GET /v1/usage` ([`PrepaidApi`]).
//!
//! Whoever holds neither a valid proof nor a token cannot spend a balance: a bare address
//! is never a credential. EIP-1271 / EIP-6492 smart-wallet signatures are not verified
//! yet (refused). With feature `x402`, a balance can also be funded by an x402 `exact`
//! payment ([`credit_top_ups`]), for clients with only an x402 wallet.

mod api;
mod deposit_error;
mod deposits;
mod keys;
mod message;
mod method;
mod nonce;
mod payload;
mod sign_in_error;
mod siwx;
mod token;
#[cfg(feature = "x402")]
mod top_up;
mod usage;

pub use api::PrepaidApi;
pub use deposit_error::DepositError;
pub use deposits::{Deposit, Deposits};
pub use method::Prepaid;
pub use payload::SiwxPayload;
pub use sign_in_error::SignInError;
pub use siwx::{SIGN_IN_WITH_X, SIWX_EXTENSION, Siwx, SiwxChallenge, SiwxInfo, SupportedChain};
pub use token::{SessionToken, SessionTokens, TOKEN_PREFIX};
#[cfg(feature = "x402")]
#[cfg_attr(docsrs, doc(cfg(feature = "x402")))]
pub use top_up::credit_top_ups;
pub use usage::UsageRecord;
