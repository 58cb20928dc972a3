//! The ledger arithmetic the stores that run in Rust share (`MemoryStore`, `PostgresStore`;
//! the Redis store does the same steps in Lua). Each function checks everything before it
//! writes, so a refused step leaves its figures as they were.

use super::{ChannelState, StoreError, StoreErrorKind};
use crate::amount::Amount;

/// What a reservation may take: `min(available, max)`, if that is at least `min`.
pub(super) fn grant(state: &ChannelState, min: Amount, max: Amount) -> Result<Amount, StoreError> {
    if state.finalized {
        return Err(StoreError::new(StoreErrorKind::Finalized));
    }
    if min > max {
        return Err(invalid());
    }
    let available = sub(sub(state.accepted, state.spent)?, state.reserved)?;
    let grant = available.min(max);
    if grant < min {
        return Err(StoreError::new(StoreErrorKind::Insufficient { available }));
    }
    Ok(grant)
}

/// Raises a reservation of `amount`'s committed totals (`committed`, `held_units`) to
/// `used` / `units` and moves the difference from reserved to spent.
pub(super) fn commit(
    state: &mut ChannelState,
    amount: Amount,
    committed: &mut Amount,
    held_units: &mut u64,
    used: Amount,
    units: u64,
) -> Result<(), StoreError> {
    if used > amount {
        return Err(invalid());
    }
    let delta = used.saturating_sub(*committed);
    let reserved = sub(state.reserved, delta)?;
    let spent = add(state.spent, delta)?;
    let total_units = state.units.checked_add(units.saturating_sub(*held_units)).ok_or_else(invalid)?;
    (state.reserved, state.spent, state.units) = (reserved, spent, total_units);
    *committed = (*committed).max(used);
    *held_units = (*held_units).max(units);
    Ok(())
}

pub(super) fn add(x: Amount, y: Amount) -> Result<Amount, StoreError> {
    x.checked_add(y).ok_or_else(invalid)
}

pub(super) fn sub(x: Amount, y: Amount) -> Result<Amount, StoreError> {
    x.checked_sub(y).ok_or_else(invalid)
}

pub(super) fn invalid() -> StoreError {
    StoreError::new(StoreErrorKind::Invalid)
}
