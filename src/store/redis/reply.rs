//! What a script answers: the channel's state and a step's extras, or a refusal.

use crate::amount::Amount;
use crate::store::{ChannelState, StoreError, StoreErrorKind};

use super::error::unexpected;

/// A ledger step's answer: the state, then whatever the step adds (a reservation's id and
/// amount).
pub(super) struct Reply {
    pub(super) state: ChannelState,
    pub(super) extra: Vec<String>,
}

/// Reads a ledger script's answer: `None` when the channel does not exist and the step
/// allows that (`load`), a refusal as its [`StoreErrorKind`].
pub(super) fn parse(words: Vec<String>) -> Result<Option<Reply>, StoreError> {
    let refused = |kind| Err(StoreError::new(kind));
    match words.first().map(String::as_str) {
        Some("ok") if words.len() >= 9 => {}
        Some("none") => return Ok(None),
        Some("not_found") => return refused(StoreErrorKind::NotFound),
        Some("exists") => return refused(StoreErrorKind::Exists),
        Some("finalized") => return refused(StoreErrorKind::Finalized),
        Some("invalid") => return refused(StoreErrorKind::Invalid),
        Some("insufficient") => {
            let available = amount(words.get(1))?;
            return refused(StoreErrorKind::Insufficient { available });
        }
        _ => return Err(unexpected(&words)),
    }
    let state = ChannelState {
        accepted: amount(words.get(1))?,
        deposit: amount(words.get(2))?,
        spent: amount(words.get(3))?,
        reserved: amount(words.get(4))?,
        units: number(words.get(5))?,
        asked: amount(words.get(6))?,
        finalized: number(words.get(7))? == 1,
        version: number(words.get(8))?,
    };
    Ok(Some(Reply { state, extra: words[9..].to_vec() }))
}

pub(super) fn amount(word: Option<&String>) -> Result<Amount, StoreError> {
    word.and_then(|w| w.parse().ok()).map(Amount::new).ok_or_else(|| unexpected(&word))
}

pub(super) fn number(word: Option<&String>) -> Result<u64, StoreError> {
    word.and_then(|w| w.parse().ok()).ok_or_else(|| unexpected(&word))
}
