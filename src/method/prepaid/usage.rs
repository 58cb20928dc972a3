//! [`UsageRecord`]: one paid request on a prepaid balance, as the usage endpoint lists it.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;

/// One request a balance paid for, written by the same store step that debited it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UsageRecord {
    /// When the response was settled, Unix seconds.
    pub at: u64,
    /// The request path (its first 256 bytes).
    pub path: String,
    /// The model asked for (its first 256 bytes), when the method was told how to read it
    /// ([`Prepaid::model_with`](super::Prepaid::model_with)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The input units priced before the response (an LLM request's estimated prompt
    /// tokens).
    pub prompt_tokens: u64,
    /// The units the response delivered, as metered (an LLM response's tokens).
    pub units: u64,
    /// What the balance was debited, in base units (decimal text: exact for any amount).
    pub cost: Amount,
}

impl UsageRecord {
    /// The record as the store keeps it (JSON).
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// A record the store kept; `None` if it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
