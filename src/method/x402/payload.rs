//! The inner `payload` object of an x402 EVM payment, typed, with field names exactly as the
//! clients send them.

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use super::decimal;

/// The `payload` of an x402 EVM payment:
/// `{"signature": "0x…", "authorization": {from, to, value, validAfter, validBefore, nonce}}`.
///
/// One wire shape carries two signed messages; the offer says which
/// ([`TransferMethod`](super::TransferMethod)):
///
/// - EIP-3009 `TransferWithAuthorization` (x402 `exact`, @x402/evm, mppx, @libertai/x402's
///   default): the authorization is the signed message itself.
/// - EIP-2612 `Permit` (@libertai/x402 with `extra.primaryType: "Permit"`): `from` is the
///   owner, `to` the spender (= payTo), `value` the maximum, `validBefore` the deadline,
///   `nonce` the owner's permit nonce as 32-byte hex, `validAfter` `"0"`. See [`Permit`].
///
/// ```
/// use tollgate::method::x402::ExactPayload;
///
/// let payload: ExactPayload = serde_json::from_str(r#"{
///   "signature": "0x00",
///   "authorization": {
///     "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
///     "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
///     "value": "10000", "validAfter": "0", "validBefore": "1740672154",
///     "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
///   }
/// }"#).unwrap();
/// assert_eq!(payload.authorization.value, alloy::primitives::U256::from(10_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactPayload {
    /// The EIP-712 signature, `0x`-prefixed hex (65 bytes `r ‖ s ‖ v`).
    pub signature: Bytes,
    /// What was signed.
    pub authorization: Authorization,
}

/// An EIP-3009 `TransferWithAuthorization` as the x402 payload carries it (numbers as decimal
/// strings, the nonce as 32-byte hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// The payer.
    pub from: Address,
    /// The payee (must be the offer's `payTo`).
    pub to: Address,
    /// Base units.
    #[serde(with = "decimal::u256")]
    pub value: U256,
    /// Valid strictly after this unix time.
    #[serde(with = "decimal::u64")]
    pub valid_after: u64,
    /// Valid strictly before this unix time.
    #[serde(with = "decimal::u64")]
    pub valid_before: u64,
    /// A random 32-byte nonce, single use per payer on the token.
    pub nonce: B256,
}

/// An EIP-2612 `Permit(owner, spender, value, nonce, deadline)`, read from the
/// [`Authorization`] fields @libertai/x402 fills for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    /// Who pays (`authorization.from`).
    pub owner: Address,
    /// Who may pull (`authorization.to`; must be the offer's `payTo`).
    pub spender: Address,
    /// The most the spender may pull (`authorization.value`).
    pub value: U256,
    /// The owner's permit nonce on the token (`authorization.nonce` as a number).
    pub nonce: U256,
    /// The last unix time the permit can be used (`authorization.validBefore`).
    pub deadline: u64,
}

impl From<&Authorization> for Permit {
    fn from(a: &Authorization) -> Self {
        Permit {
            owner: a.from,
            spender: a.to,
            value: a.value,
            nonce: U256::from_be_bytes(a.nonce.0),
            deadline: a.valid_before,
        }
    }
}
