//! The `payload` of an x402 `upto` payment, typed, with field names exactly as @x402/evm sends
//! them.

use alloy::primitives::{Address, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::method::x402::decimal;

/// The `payload` of an x402 `upto` payment on EVM: a Permit2 `PermitWitnessTransferFrom`
/// signed by the payer, `{"signature": "0x…", "permit2Authorization": {…}}`.
///
/// ```
/// use tollgate::method::x402::UptoPayload;
///
/// let payload: UptoPayload = serde_json::from_str(r#"{
///   "signature": "0x00",
///   "permit2Authorization": {
///     "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
///     "permitted": {"token": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "amount": "10000"},
///     "spender": "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002",
///     "nonce": "123456789", "deadline": "1740672154",
///     "witness": {
///       "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///       "facilitator": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///       "validAfter": "0"
///     }
///   }
/// }"#).unwrap();
/// assert_eq!(payload.permit2_authorization.permitted.amount, alloy::primitives::U256::from(10_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoPayload {
    /// The EIP-712 signature under the Permit2 domain, `0x`-prefixed hex (65 bytes).
    pub signature: Bytes,
    /// What was signed.
    pub permit2_authorization: Permit2Authorization,
}

/// A Permit2 `PermitWitnessTransferFrom` with the `upto` witness, as the payload carries it
/// (numbers as decimal strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    /// The payer (Permit2's `owner`).
    pub from: Address,
    /// The token and the most that may move.
    pub permitted: TokenPermissions,
    /// Who may call Permit2 with it: the x402 upto proxy.
    pub spender: Address,
    /// A Permit2 unordered nonce: bit `nonce & 0xff` of the owner's word `nonce >> 8`.
    #[serde(with = "decimal::u256")]
    pub nonce: U256,
    /// The last unix time it can be used.
    #[serde(with = "decimal::u64")]
    pub deadline: u64,
    /// What the proxy binds: payee, settler, earliest time.
    pub witness: UptoWitness,
}

/// Permit2's `TokenPermissions(address token,uint256 amount)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPermissions {
    /// The token.
    pub token: Address,
    /// The most that may move, in base units.
    #[serde(with = "decimal::u256")]
    pub amount: U256,
}

/// The `upto` witness, `Witness(address to,address facilitator,uint256 validAfter)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoWitness {
    /// The payee (must be the offer's `payTo`).
    pub to: Address,
    /// The only account the proxy lets settle (the offer's `extra.facilitatorAddress`).
    pub facilitator: Address,
    /// Not usable before this unix time.
    #[serde(with = "decimal::u64")]
    pub valid_after: u64,
}
