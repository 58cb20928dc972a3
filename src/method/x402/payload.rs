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
pub struct ExactPayload {
    /// The EIP-712 signature, `0x`-prefixed hex (65 bytes `r ‖ s ‖ v`).
    pub signature: Bytes,
    /// What was signed.
    pub authorization: Authorization,
}

/// An EIP-3009 `TransferWithAuthorization` as the x402 payload carries it (numbers as decimal
/// strings, the nonce as 32-byte hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn authorization(value: &str, valid_before: serde_json::Value) -> serde_json::Value {
        json!({
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": value, "validAfter": "0", "validBefore": valid_before,
            "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
        })
    }

    #[test]
    fn numbers_are_plain_decimal_strings() {
        let a: Authorization = serde_json::from_value(authorization("10000", json!("1740672154"))).unwrap();
        assert_eq!((a.value, a.valid_before), (U256::from(10_000), 1_740_672_154));
        for bad in ["-1", "0x10", "1e3", " 1", "", "1.0"] {
            assert!(serde_json::from_value::<Authorization>(authorization(bad, json!("1"))).is_err(), "{bad:?}");
        }
        // A number where a string belongs, or a time beyond u64: refused.
        assert!(serde_json::from_value::<Authorization>(authorization("1", json!(1))).is_err());
        assert!(serde_json::from_value::<Authorization>(authorization("1", json!("18446744073709551616"))).is_err());
        let max = U256::MAX.to_string();
        assert_eq!(serde_json::from_value::<Authorization>(authorization(&max, json!("1"))).unwrap().value, U256::MAX);
    }

    #[test]
    fn round_trips_in_the_clients_shape() {
        let a: Authorization = serde_json::from_value(authorization("10000", json!("1740672154"))).unwrap();
        let back = serde_json::to_value(a).unwrap();
        assert_eq!(back["value"], "10000");
        assert_eq!(back["validBefore"], "1740672154");
        assert_eq!(serde_json::from_value::<Authorization>(back).unwrap(), a);
    }

    #[test]
    fn a_permit_reads_the_libertai_fields() {
        let mut wire = authorization("5000", json!("1740672154"));
        wire["nonce"] = json!(format!("0x{:064x}", 3));
        let p = Permit::from(&serde_json::from_value::<Authorization>(wire).unwrap());
        assert_eq!((p.value, p.nonce, p.deadline), (U256::from(5_000), U256::from(3), 1_740_672_154));
    }
}
