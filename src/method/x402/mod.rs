//! x402 on EVM chains, the method internals: typed payloads, verification, settlement.
//!
//! The wire codec (the `PAYMENT-REQUIRED` / `PAYMENT-SIGNATURE` / `X-PAYMENT` envelopes and
//! the v1/v2 `PaymentRequired` / `PaymentPayload` / `SettleResponse` types) lives apart; this
//! module takes the inner `payload` object of a payment and the seller's [`EvmOffer`]:
//!
//! 1. [`ExactPayload`] — `{signature, authorization: {from, to, value, validAfter,
//!    validBefore, nonce}}`, read as an EIP-3009 `TransferWithAuthorization` or, for a
//!    [`TransferMethod::Permit`] offer, an EIP-2612 [`Permit`] (the @libertai/x402 form).
//! 2. [`X402Verifier::verify`] — signature under the token's EIP-712 domain (libsecp256k1,
//!    low-s), `to == payTo`, the [`ValueRule`], the validity window, the token's nonce
//!    state and the payer's balance, then an atomic claim in the [`ChannelStore`] so a
//!    replay is refused on every instance. The claim is the account the response draws on.
//! 3. [`Settle`] — [`OnChainSettler`] (the payee's key, through
//!    [`RpcChain`](crate::method::tempo::RpcChain)) or [`Facilitator`] (HTTP). Ambiguous
//!    outcomes are confirmed by the token's nonce state and never charged twice.
//!
//! 4. [`X402Upto`] — the x402 `upto` scheme: a Permit2 transfer of at most the maximum,
//!    settled for what was metered through the x402 upto proxy (see [`UptoPayload`]).
//!
//! The layer decides *whether* to settle: never after an upstream error or a non-2xx
//! response (see [`settle`](self::settle#what-the-caller-decides)).
//!
//! [`ChannelStore`]: crate::store::ChannelStore

mod claim;
mod decimal;
mod eip712;
mod error;
mod method;
mod offer;
mod payload;
mod proof;
pub mod settle;
mod settling;
mod signature;
mod token;
mod upto;
mod verify;

pub use claim::CLAIM_LAPSE_GRACE;
pub use error::{X402Error, X402ErrorKind};
pub use method::{SettlementOutcome, X402Exact};
pub use offer::{DEFAULT_MAX_TIMEOUT_SECONDS, EvmOffer, TransferMethod, ValueRule};
pub use payload::{Authorization, ExactPayload, Permit};
pub use settle::{Facilitator, OnChainSettler, Settle, Settlement};
pub use signature::EvmSignature;
pub use token::{IAuthorizedToken, X402Chain};
pub use upto::{
    PERMIT2_ADDRESS, Permit2Authorization, TokenPermissions, UPTO_PROXY_ADDRESS, UptoPayload, UptoVerified,
    UptoWitness, X402Upto, upto_claim_id,
};
pub use verify::{Checked, DEFAULT_SETTLE_MARGIN_SECS, Verified, X402Verifier, check, claim_id};
