//! The x402 `upto` scheme on EVM: the payer signs a Permit2 `PermitWitnessTransferFrom` of
//! at most the request's maximum to the x402 upto proxy, and the seller settles exactly what
//! it delivered.
//!
//! What the @x402/evm 2.27 `upto` client signs, under the Permit2 domain `{name: "Permit2",
//! chainId, verifyingContract: PERMIT2}`:
//!
//! ```text
//! PermitWitnessTransferFrom(TokenPermissions permitted, address spender, uint256 nonce,
//!   uint256 deadline, Witness witness)
//! TokenPermissions(address token, uint256 amount)      // amount = the offer's maximum
//! Witness(address to, address facilitator, uint256 validAfter)
//! ```
//!
//! with `spender` = [`UPTO_PROXY_ADDRESS`], `to` = `payTo`, `facilitator` = the offer's
//! `extra.facilitatorAddress`. The proxy's `settle(permit, amount, owner, witness,
//! signature)` lets only that facilitator move `amount` ≤ the maximum to `to`; Permit2 burns
//! the nonce (bit `nonce & 0xff` of the owner's word `nonce >> 8`) with the transfer.

mod contracts;
mod digest;
mod method;
mod payload;
pub(crate) mod settle;
mod verify;

use alloy::primitives::{Address, address};

pub use method::X402Upto;
pub(crate) use method::upto_requirement;
pub use payload::{Permit2Authorization, TokenPermissions, UptoPayload, UptoWitness};
pub(crate) use verify::nonce_used as upto_nonce_used;
pub use verify::{UptoVerified, upto_claim_id};

/// Permit2's canonical address (the same on every chain).
pub const PERMIT2_ADDRESS: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
/// The x402 upto proxy's canonical address (what @x402/evm 2.27 signs as the spender).
pub const UPTO_PROXY_ADDRESS: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
