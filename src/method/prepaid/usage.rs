//! [`UsageRecord`]: one paid request on a prepaid balance, as the usage endpoint lists it.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;

/// One request a balance paid for, written by the same store step that debited it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UsageRecord {
    /// When the response was settled, Unix seconds (when it was admitted, for a
    /// [reclaimed](Self::reclaimed) one).
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
    /// `true` when no holder released the response: its instance died (or lost the store)
    /// mid-response and the store reclaimed the reservation, debiting what the last renewal
    /// reported delivered (see [`ChannelStore::reserve_recording`]).
    ///
    /// [`ChannelStore::reserve_recording`]: crate::store::ChannelStore::reserve_recording
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reclaimed: bool,
}

/// A record without its outcome: what a reclaim completes (see [`UsageRecord::head`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    at: u64,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    prompt_tokens: u64,
}

impl UsageRecord {
    /// The record as the store keeps it (JSON).
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The head of the record a reclaim of the response's reservation appends (its JSON
    /// object without the units, the cost and the closing brace), or `None` if it cannot
    /// be written.
    pub(crate) fn head(at: u64, path: &str, model: Option<&str>, prompt_tokens: u64) -> Option<bytes::Bytes> {
        let mut json = serde_json::to_vec(&Head { at, path, model, prompt_tokens }).ok()?;
        // Always an object ending in its brace, with `at` in it.
        (json.pop() == Some(b'}')).then(|| bytes::Bytes::from(json))
    }

    /// A record the store kept; `None` if it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
