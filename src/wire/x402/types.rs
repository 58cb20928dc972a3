//! The x402 JSON objects, with their exact wire names.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};

/// One v2 offer (`accepts[i]`, and a payment's `accepted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The scheme (`exact`, `upto`, …).
    pub scheme: String,
    /// The network, a CAIP-2 id (`eip155:8453`).
    pub network: String,
    /// The amount in the asset's base units.
    pub amount: Amount,
    /// The asset (a token address).
    pub asset: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long a payment for this offer stays valid.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (for EVM `exact`: the token's EIP-712 `name` and `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// The resource a v2 `PaymentRequired` is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Its URL.
    pub url: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The v2 offers: the `PAYMENT-REQUIRED` header's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is required (or why a payment was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is sold.
    pub resource: Resource,
    /// The offers.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions (`key → {info, schema}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
}

/// One v1 offer (`accepts[i]` of the v1 body), with the v1 names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// The scheme.
    pub scheme: String,
    /// The network (a v1 name, or a CAIP-2 id for the hybrid clients that copy it back).
    pub network: String,
    /// The most the payment may be, in base units.
    pub max_amount_required: Amount,
    /// The resource's URL.
    pub resource: String,
    /// What it is.
    pub description: String,
    /// Its media type.
    pub mime_type: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long a payment stays valid.
    pub max_timeout_seconds: u64,
    /// The asset.
    pub asset: String,
    /// Scheme-specific data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl PaymentRequirementsV1 {
    /// The v1 form of a v2 offer for `resource`. The network stays as the v2 offer
    /// writes it (CAIP-2): the hybrid clients (`@libertai/x402`) copy it into their payment.
    pub fn from_v2(offer: &PaymentRequirements, resource: &Resource) -> Self {
        PaymentRequirementsV1 {
            scheme: offer.scheme.clone(),
            network: offer.network.clone(),
            max_amount_required: offer.amount,
            resource: resource.url.clone(),
            description: resource.description.clone().unwrap_or_default(),
            mime_type: resource.mime_type.clone().unwrap_or_default(),
            pay_to: offer.pay_to.clone(),
            max_timeout_seconds: offer.max_timeout_seconds,
            asset: offer.asset.clone(),
            extra: offer.extra.clone(),
        }
    }
}

/// The v1 offers: a `402`'s JSON body `{x402Version, error, accepts}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// Always 1.
    pub x402_version: u32,
    /// Why payment is required.
    pub error: String,
    /// The offers.
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// A payment, as `PAYMENT-SIGNATURE` or `X-PAYMENT` carry it.
///
/// Read leniently: v2 names the offer it pays in `accepted`; v1 (and `@libertai/x402`
/// 0.1.0, which labels a v1 shape `x402Version: 2`) names only `scheme` and `network`.
/// `accepted` and `payload` stay JSON here: the method that made the offer reads them into
/// its own types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// 1 or 2.
    pub x402_version: u32,
    /// The resource paid for (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
    /// The offer paid (v2): a copy of one `accepts[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<serde_json::Value>,
    /// The scheme (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The network (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The scheme's proof (for EVM `exact`: `{signature, authorization}`).
    pub payload: serde_json::Value,
    /// Extensions the client echoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
}

impl PaymentPayload {
    /// `accepted` as a v2 offer, if there is one.
    pub fn accepted_requirements(&self) -> Option<Result<PaymentRequirements, PaymentError>> {
        let accepted = self.accepted.as_ref()?;
        Some(PaymentRequirements::deserialize(accepted).map_err(|e| {
            PaymentError::new(PaymentErrorKind::InvalidPayload, format!("x402 accepted is not an offer: {e}"))
        }))
    }

    /// The scheme paid with: `accepted.scheme`, else the top-level `scheme`.
    pub fn scheme(&self) -> Option<&str> {
        let accepted = self.accepted.as_ref().and_then(|a| a.get("scheme")).and_then(serde_json::Value::as_str);
        accepted.or(self.scheme.as_deref())
    }

    /// The network paid on: `accepted.network`, else the top-level `network`.
    pub fn network(&self) -> Option<&str> {
        let accepted = self.accepted.as_ref().and_then(|a| a.get("network")).and_then(serde_json::Value::as_str);
        accepted.or(self.network.as_deref())
    }
}

/// A settlement's outcome: the `PAYMENT-RESPONSE` (v2) / `X-PAYMENT-RESPONSE` (v1) JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether it settled.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Who paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The transaction hash (empty on failure or a zero settlement).
    pub transaction: String,
    /// The network.
    pub network: String,
    /// The amount settled (`upto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer() -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: Amount::new(10_000),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: Some(json!({"name": "USDC", "version": "2"})),
        }
    }

    #[test]
    fn v2_payment_required_has_the_spec_names() {
        let required = PaymentRequired {
            x402_version: 2,
            error: Some("PAYMENT-SIGNATURE header is required".into()),
            resource: Resource { url: "https://api.example.com/premium".into(), ..Resource::default() },
            accepts: vec![offer()],
            extensions: None,
        };
        let json = serde_json::to_value(&required).unwrap();
        assert_eq!(
            json,
            json!({
                "x402Version": 2,
                "error": "PAYMENT-SIGNATURE header is required",
                "resource": {"url": "https://api.example.com/premium"},
                "accepts": [{
                    "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                    "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                    "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                    "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}
                }]
            })
        );
        assert_eq!(serde_json::from_value::<PaymentRequired>(json).unwrap(), required);
    }

    #[test]
    fn v1_offers_carry_the_v1_names() {
        let resource = Resource {
            url: "https://api.example.com/v1/chat".into(),
            description: Some("chat".into()),
            mime_type: Some("application/json".into()),
        };
        let v1 = PaymentRequirementsV1::from_v2(&offer(), &resource);
        let json = serde_json::to_value(PaymentRequiredV1 {
            x402_version: 1,
            error: "X-PAYMENT header is required".into(),
            accepts: vec![v1],
        })
        .unwrap();
        let entry = &json["accepts"][0];
        for (name, value) in [
            ("maxAmountRequired", json!("10000")),
            ("resource", json!("https://api.example.com/v1/chat")),
            ("description", json!("chat")),
            ("mimeType", json!("application/json")),
            ("payTo", json!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C")),
            ("asset", json!("0x036CbD53842c5426634e7929541eC2318f3dCF7e")),
            ("maxTimeoutSeconds", json!(60)),
            ("extra", json!({"name": "USDC", "version": "2"})),
        ] {
            assert_eq!(entry[name], value, "{name}");
        }
        assert_eq!(json["x402Version"], 1);
        assert!(entry.get("amount").is_none());
    }

    #[test]
    fn payloads_of_each_client_shape_read() {
        let v2 = json!({"x402Version": 2, "resource": {"url": "https://x"}, "accepted": serde_json::to_value(offer()).unwrap(),
                        "payload": {"signature": "0x1", "authorization": {"from": "0xA"}}});
        let v2: PaymentPayload = serde_json::from_value(v2).unwrap();
        assert_eq!(v2.accepted_requirements().unwrap().unwrap(), offer());
        assert_eq!((v2.scheme(), v2.network()), (Some("exact"), Some("eip155:84532")));
        // @libertai/x402 0.1.0: a v1 shape labelled 2, no `accepted`.
        let libertai = json!({"x402Version": 2, "scheme": "exact", "network": "eip155:8453",
                              "payload": {"signature": "0x1", "authorization": {"value": "10"}}});
        let libertai: PaymentPayload = serde_json::from_value(libertai).unwrap();
        assert!(libertai.accepted_requirements().is_none());
        assert_eq!((libertai.scheme(), libertai.network()), (Some("exact"), Some("eip155:8453")));
        let bad = json!({"x402Version": 2, "accepted": {"scheme": "exact"}, "payload": {}});
        let bad: PaymentPayload = serde_json::from_value(bad).unwrap();
        assert_eq!(bad.accepted_requirements().unwrap().unwrap_err().kind(), PaymentErrorKind::InvalidPayload);
    }

    #[test]
    fn settle_responses_have_the_spec_names() {
        let settled = SettleResponse {
            success: true,
            payer: Some("0x857b06519E91e3A54538791bDbb0E22373e36b66".into()),
            transaction: "0xbeef".into(),
            network: "eip155:84532".into(),
            ..SettleResponse::default()
        };
        assert_eq!(
            serde_json::to_value(&settled).unwrap(),
            json!({"success": true, "payer": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                   "transaction": "0xbeef", "network": "eip155:84532"})
        );
        let failed: SettleResponse =
            serde_json::from_value(json!({"success": false, "errorReason": "insufficient_funds",
            "transaction": "", "network": "eip155:84532"}))
            .unwrap();
        assert_eq!(failed.error_reason.as_deref(), Some("insufficient_funds"));
    }
}
