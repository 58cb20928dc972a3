//! Amounts as the scripts see them: Lua numbers are doubles, exact only up to 2^53 − 1.

use crate::amount::Amount;
use crate::store::{StoreError, StoreErrorKind};

/// The largest amount (and unit count) a [`RedisStore`](super::RedisStore) keeps.
pub(super) const MAX_AMOUNT: Amount = Amount::new(LIMIT as u128);

const LIMIT: u64 = (1 << 53) - 1;

/// An amount the store keeps as it is: refused above [`MAX_AMOUNT`].
pub(super) fn exact(amount: Amount) -> Result<String, StoreError> {
    if amount > MAX_AMOUNT {
        return Err(StoreError::new(StoreErrorKind::Invalid));
    }
    Ok(amount.to_string())
}

/// A count the store keeps as it is: refused above [`MAX_AMOUNT`].
pub(super) fn exact_count(count: u64) -> Result<String, StoreError> {
    if count > LIMIT {
        return Err(StoreError::new(StoreErrorKind::Invalid));
    }
    Ok(count.to_string())
}

/// A bound the store only compares with amounts it keeps (a reservation's `min` and `max`,
/// a commit's total): anything above [`MAX_AMOUNT`] acts as 2^53, which is above every
/// kept amount and still exact, so the outcome is the same as with the real bound.
pub(super) fn bound(amount: Amount) -> String {
    amount.min(Amount::new(u128::from(LIMIT) + 1)).to_string()
}

/// [`bound`] for a unit count.
pub(super) fn bound_count(count: u64) -> String {
    count.min(LIMIT + 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_stay_exact_as_doubles() {
        let top = bound(Amount::new(u128::MAX));
        assert_eq!(top, "9007199254740992");
        assert_eq!(top.parse::<f64>().unwrap() as u128, 1 << 53);
        assert_eq!(bound(Amount::new(7)), "7");
        assert_eq!(bound_count(u64::MAX), "9007199254740992");
        assert!(exact(MAX_AMOUNT).is_ok());
        assert_eq!(exact(Amount::new(1 << 53)).unwrap_err().kind(), &StoreErrorKind::Invalid);
        assert_eq!(exact_count(1 << 53).unwrap_err().kind(), &StoreErrorKind::Invalid);
    }
}
