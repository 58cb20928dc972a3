//! The `request` of a charge challenge (§5.1): written from the config and the price, and
//! read back from the echoed challenge to know what a payment must transfer.

use alloy::primitives::{Address, B256, U256};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::{ChargeConfig, ChargeModes, Split};
use super::matching::Transfer;
use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};

/// What a charge asks for.
/// What a charge challenge asks for (§5.1): an amount of a token to a recipient on a
/// chain, with optional splits and memo. Read from and written as the challenge's JSON.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct ChargeRequest {
    pub(crate) amount: Amount,
    pub(crate) currency: Address,
    pub(crate) recipient: Address,
    pub(crate) chain_id: u64,
    pub(crate) modes: ChargeModes,
    pub(crate) splits: Vec<Split>,
    pub(crate) memo: Option<B256>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    amount: Amount,
    currency: Address,
    recipient: Address,
    method_details: Details,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    chain_id: u64,
    #[serde(default)]
    supported_modes: Option<Vec<String>>,
    #[serde(default)]
    splits: Option<Vec<WireSplit>>,
    #[serde(default)]
    memo: Option<B256>,
}

#[derive(Deserialize)]
struct WireSplit {
    amount: Amount,
    recipient: Address,
    #[serde(default)]
    memo: Option<B256>,
}

fn invalid(detail: impl Into<std::borrow::Cow<'static, str>>) -> PaymentError {
    PaymentError::new(PaymentErrorKind::InvalidChallenge, detail)
}

impl TryFrom<Value> for ChargeRequest {
    type Error = PaymentError;

    fn try_from(value: Value) -> Result<Self, PaymentError> {
        ChargeRequest::parse(&value)
    }
}

impl From<ChargeRequest> for Value {
    fn from(request: ChargeRequest) -> Value {
        request.to_json()
    }
}

impl ChargeRequest {
    /// The request for a charge of `amount`, or `None` when it cannot be sold: a zero
    /// amount (that takes a proof credential, which is not supported) or one the splits
    /// leave nothing of.
    pub(crate) fn offer(config: &ChargeConfig, amount: Amount) -> Option<Self> {
        if amount.is_zero() || config.split_total()? >= amount {
            return None;
        }
        Some(ChargeRequest {
            amount,
            currency: config.currency,
            recipient: config.recipient,
            chain_id: config.chain_id,
            modes: config.modes,
            splits: config.splits.clone(),
            memo: config.memo,
        })
    }

    /// The JSON object of the challenge's `request`.
    pub(crate) fn to_json(&self) -> Value {
        let mut details = Map::new();
        details.insert("chainId".into(), json!(self.chain_id));
        if let Some(modes) = self.modes.advertised() {
            details.insert("supportedModes".into(), json!(modes));
        }
        if !self.splits.is_empty() {
            let splits: Vec<Value> = self
                .splits
                .iter()
                .map(|s| {
                    let mut split = json!({"amount": s.amount.to_string(), "recipient": s.recipient.to_checksum(None)});
                    if let Some(memo) = s.memo {
                        split["memo"] = json!(format!("{memo:#x}"));
                    }
                    split
                })
                .collect();
            details.insert("splits".into(), Value::Array(splits));
        }
        if let Some(memo) = self.memo {
            details.insert("memo".into(), json!(format!("{memo:#x}")));
        }
        json!({
            "amount": self.amount.to_string(),
            "currency": self.currency.to_checksum(None),
            "methodDetails": details,
            "recipient": self.recipient.to_checksum(None),
        })
    }

    /// Reads an echoed `request` (issued by this server, so a bad one is an
    /// `invalid-challenge`).
    pub(crate) fn parse(request: &Value) -> Result<Self, PaymentError> {
        let wire = Wire::deserialize(request).map_err(|e| invalid(format!("charge request: {e}")))?;
        let details = wire.method_details;
        let modes = match details.supported_modes.as_deref() {
            None => ChargeModes::PullAndPush,
            Some([one]) if one == "pull" => ChargeModes::Pull,
            Some([one]) if one == "push" => ChargeModes::Push,
            Some([a, b]) if (a == "pull" && b == "push") || (a == "push" && b == "pull") => ChargeModes::PullAndPush,
            Some(_) => return Err(invalid("charge request has unknown supportedModes")),
        };
        let splits = details.splits.unwrap_or_default();
        Ok(ChargeRequest {
            amount: wire.amount,
            currency: wire.currency,
            recipient: wire.recipient,
            chain_id: details.chain_id,
            modes,
            splits: splits
                .into_iter()
                .map(|s| Split { recipient: s.recipient, amount: s.amount, memo: s.memo })
                .collect(),
            memo: details.memo,
        })
    }

    /// The transfers a payment must make: the primary one (the amount minus the splits,
    /// with the fixed memo if any), then each split.
    pub(crate) fn transfers(&self) -> Result<Vec<Transfer>, PaymentError> {
        let splits = self
            .splits
            .iter()
            .try_fold(Amount::ZERO, |sum, s| sum.checked_add(s.amount).filter(|_| !s.amount.is_zero()));
        let primary = splits
            .and_then(|total| self.amount.checked_sub(total))
            .filter(|primary| !primary.is_zero())
            .ok_or_else(|| invalid("charge request splits leave nothing for the recipient"))?;
        let transfer = |recipient, amount: Amount, memo| Transfer { recipient, amount: U256::from(amount.get()), memo };
        let mut transfers = vec![transfer(self.recipient, primary, self.memo)];
        transfers.extend(self.splits.iter().map(|s| transfer(s.recipient, s.amount, s.memo)));
        Ok(transfers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tempo::PATH_USD;

    fn config() -> ChargeConfig {
        ChargeConfig::new(4242, PATH_USD, Address::repeat_byte(0x11))
    }

    #[test]
    fn a_plain_request_round_trips() {
        let request = ChargeRequest::offer(&config(), Amount::new(1000)).unwrap();
        let json = request.to_json();
        assert_eq!(
            json,
            json!({
                "amount": "1000",
                "currency": "0x20C0000000000000000000000000000000000000",
                "methodDetails": {"chainId": 4242},
                "recipient": Address::repeat_byte(0x11).to_checksum(None),
            })
        );
        assert_eq!(ChargeRequest::parse(&json).unwrap(), request);
        let transfers = request.transfers().unwrap();
        assert_eq!(
            transfers,
            vec![Transfer { recipient: Address::repeat_byte(0x11), amount: U256::from(1000), memo: None }]
        );
    }

    #[test]
    fn splits_modes_and_memo_round_trip() {
        let memo = B256::repeat_byte(0xaa);
        let split_memo = B256::repeat_byte(0xbb);
        let config = config()
            .splits(vec![
                Split::new(Address::repeat_byte(0x22), Amount::new(100)),
                Split::new(Address::repeat_byte(0x33), Amount::new(50)).memo(split_memo),
            ])
            .memo(memo)
            .modes(ChargeModes::Push);
        let request = ChargeRequest::offer(&config, Amount::new(1000)).unwrap();
        let json = request.to_json();
        assert_eq!(json["methodDetails"]["supportedModes"], json!(["push"]));
        assert_eq!(json["methodDetails"]["splits"][1]["memo"], format!("{split_memo:#x}"));
        assert_eq!(ChargeRequest::parse(&json).unwrap(), request);
        let amounts: Vec<_> = request.transfers().unwrap().iter().map(|t| (t.amount, t.memo)).collect();
        assert_eq!(
            amounts,
            vec![(U256::from(850), Some(memo)), (U256::from(100), None), (U256::from(50), Some(split_memo))]
        );
    }

    #[test]
    fn unsellable_amounts_are_not_offered() {
        assert_eq!(ChargeRequest::offer(&config(), Amount::ZERO), None);
        let split = config().splits(vec![Split::new(Address::repeat_byte(0x22), Amount::new(100))]);
        assert_eq!(ChargeRequest::offer(&split, Amount::new(100)), None, "the splits must leave something");
        assert!(ChargeRequest::offer(&split, Amount::new(101)).is_some());
    }

    #[test]
    fn bad_echoed_requests_are_invalid_challenges() {
        let good = ChargeRequest::offer(&config(), Amount::new(10)).unwrap().to_json();
        let mut no_chain = good.clone();
        no_chain["methodDetails"] = json!({});
        let mut bad_modes = good.clone();
        bad_modes["methodDetails"]["supportedModes"] = json!(["teleport"]);
        let mut eaten = good.clone();
        eaten["methodDetails"]["splits"] = json!([{"amount": "10", "recipient": Address::ZERO}]);
        for bad in [json!({}), json!({"amount": "x"}), no_chain, bad_modes] {
            assert_eq!(ChargeRequest::parse(&bad).unwrap_err().kind(), PaymentErrorKind::InvalidChallenge, "{bad}");
        }
        let eaten = ChargeRequest::parse(&eaten).unwrap();
        assert_eq!(eaten.transfers().unwrap_err().kind(), PaymentErrorKind::InvalidChallenge);
    }
}
