//! [`SessionRequest`]: the `request` of a Tempo session challenge (§4.2).

use serde::{Deserialize, Serialize};

use crate::amount::Amount;

/// What a session challenge asks for: the price of one unit and where to open a channel.
/// Addresses are written checksummed, as the reference server does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SessionRequest {
    /// The price of one unit (rounded up to a base unit).
    pub amount: Amount,
    /// The token.
    pub currency: String,
    /// Chain, escrow and protocol.
    pub method_details: SessionDetails,
    /// The payee.
    pub recipient: String,
    /// What a unit is (`token`, `request`, …).
    pub unit_type: String,
    /// A hint for the client's deposit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_deposit: Option<Amount>,
}

/// The `methodDetails` of a [`SessionRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SessionDetails {
    /// The chain id.
    pub chain_id: u64,
    /// The escrow contract (v1) or channel reserve (v2).
    pub escrow_contract: String,
    /// `v1` or `v2`.
    pub session_protocol: String,
    /// The least a voucher must add, when advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_voucher_delta: Option<Amount>,
}
