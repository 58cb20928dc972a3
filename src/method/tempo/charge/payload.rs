//! The `payload` of a Tempo charge credential, one shape per `type` (§5.2).

use alloy::primitives::{B256, Bytes};
use serde::Deserialize;

#[cfg(test)]
use crate::error::{PaymentError, PaymentErrorKind};

/// A charge credential's payload, one shape per `type`. Unknown types are refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ChargePayload {
    /// Pull: the signed transaction, for the server to broadcast.
    Transaction {
        /// The signed transaction.
        signature: Bytes,
    },
    /// Push: the hash of a transaction the client broadcast.
    Hash {
        /// Its hash.
        hash: B256,
    },
    /// A zero-amount proof (not supported).
    Proof {},
}

impl ChargePayload {
    #[cfg(test)]
    pub(crate) fn parse(payload: &serde_json::Value) -> Result<Self, PaymentError> {
        ChargePayload::deserialize(payload)
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidPayload, format!("charge payload: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_type_and_refuses_bad_ones() {
        let hash = format!("0x{}", "ab".repeat(32));
        assert!(matches!(
            ChargePayload::parse(&json!({"type": "transaction", "signature": "0x76c0"})),
            Ok(ChargePayload::Transaction { signature }) if signature[..] == [0x76, 0xc0]
        ));
        assert!(matches!(
            ChargePayload::parse(&json!({"type": "hash", "hash": hash})),
            Ok(ChargePayload::Hash { hash: h }) if h == B256::repeat_byte(0xab)
        ));
        assert!(matches!(
            ChargePayload::parse(&json!({"type": "proof", "signature": "0x00"})),
            Ok(ChargePayload::Proof {})
        ));
        for bad in [
            json!({"type": "steal"}),
            json!({"type": "hash", "hash": "0x12"}),
            json!({"type": "hash"}),
            json!({"type": "transaction", "signature": "not hex"}),
            json!({"signature": "0x76"}),
            json!("0x76"),
        ] {
            assert_eq!(ChargePayload::parse(&bad).unwrap_err().kind(), PaymentErrorKind::InvalidPayload, "{bad}");
        }
    }
}
