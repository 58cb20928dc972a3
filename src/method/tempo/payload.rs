//! The `payload` of a Tempo session credential, one shape per `action` (§4.3).

use alloy::primitives::{B256, Bytes};
use serde::Deserialize;

use super::ChannelDescriptor;
use crate::amount::Amount;
#[cfg(test)]
use crate::error::{PaymentError, PaymentErrorKind};

/// A session credential's payload, one shape per `action`. Unknown actions are refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum SessionPayload {
    /// Open a channel (a signed transaction to broadcast and a first voucher).
    Open(OpenPayload),
    /// Add to the deposit.
    TopUp(TopUpPayload),
    /// Raise what the channel has paid for.
    Voucher(VoucherPayload),
    /// Close the channel.
    Close(VoucherPayload),
}

/// The `open` action's fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPayload {
    pub(crate) channel_id: B256,
    pub(crate) transaction: Bytes,
    pub(crate) cumulative_amount: Amount,
    pub(crate) signature: String,
    #[serde(default)]
    pub(crate) authorized_signer: Option<alloy::primitives::Address>,
    #[serde(default)]
    pub(crate) descriptor: Option<ChannelDescriptor>,
}

/// The `topUp` action's fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopUpPayload {
    pub(crate) channel_id: B256,
    pub(crate) transaction: Bytes,
    pub(crate) additional_deposit: Amount,
}

/// `voucher` and `close` carry the same fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherPayload {
    pub(crate) channel_id: B256,
    pub(crate) cumulative_amount: Amount,
    pub(crate) signature: String,
    #[serde(default)]
    pub(crate) descriptor: Option<ChannelDescriptor>,
}

impl SessionPayload {
    #[cfg(test)]
    pub(crate) fn parse(payload: &serde_json::Value) -> Result<Self, PaymentError> {
        SessionPayload::deserialize(payload)
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidPayload, format!("session payload: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_action_and_refuses_unknown_ones() {
        let id = format!("0x{}", "ab".repeat(32));
        let voucher = json!({"action": "voucher", "channelId": id, "cumulativeAmount": "20000", "signature": "0x00"});
        assert!(
            matches!(SessionPayload::parse(&voucher), Ok(SessionPayload::Voucher(v)) if v.cumulative_amount == Amount::new(20000))
        );
        let close = json!({"action": "close", "channelId": id, "cumulativeAmount": "1", "signature": "0x00"});
        assert!(matches!(SessionPayload::parse(&close), Ok(SessionPayload::Close(_))));
        let open = json!({"action": "open", "type": "transaction", "channelId": id, "transaction": "0x76",
                          "cumulativeAmount": "5", "signature": "0x00", "authorizedSigner": "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc"});
        assert!(matches!(SessionPayload::parse(&open), Ok(SessionPayload::Open(_))));
        let top_up = json!({"action": "topUp", "type": "transaction", "channelId": id, "transaction": "0x76", "additionalDeposit": "7"});
        assert!(matches!(SessionPayload::parse(&top_up), Ok(SessionPayload::TopUp(_))));
        for bad in [
            json!({"action": "steal", "channelId": id}),
            json!({"action": "voucher", "channelId": id}),
            json!({"action": "voucher", "channelId": "0x12", "cumulativeAmount": "1", "signature": "0x"}),
            json!({"action": "voucher", "channelId": id, "cumulativeAmount": "-1", "signature": "0x"}),
        ] {
            let err = SessionPayload::parse(&bad).unwrap_err();
            assert_eq!(err.kind(), PaymentErrorKind::InvalidPayload, "{bad}");
        }
    }
}
