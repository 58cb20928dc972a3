//! How PostgreSQL failures become [`StoreError`]s.

use crate::store::{StoreError, StoreErrorKind};

/// A failure of the server, the connection or the pool: the step may not have happened.
pub(super) fn backend(error: impl Into<crate::error::BoxError>) -> StoreError {
    StoreError::backend(error)
}

/// A row the store did not write the way it reads it (a hand-edited table, a newer schema).
pub(super) fn corrupt(what: &'static str) -> StoreError {
    StoreError::backend(format!("postgres store: unreadable {what}"))
}

pub(super) fn invalid() -> StoreError {
    StoreError::new(StoreErrorKind::Invalid)
}

pub(super) fn not_found() -> StoreError {
    StoreError::new(StoreErrorKind::NotFound)
}

pub(super) fn finalized() -> StoreError {
    StoreError::new(StoreErrorKind::Finalized)
}

pub(super) fn exists() -> StoreError {
    StoreError::new(StoreErrorKind::Exists)
}
