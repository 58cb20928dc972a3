//! How Redis failures become [`StoreError`]s: all of them are [`StoreErrorKind::Backend`]
//! (the step may or may not have happened), never a panic.
//!
//! [`StoreErrorKind::Backend`]: crate::store::StoreErrorKind::Backend

use std::fmt;
use std::time::Duration;

use crate::store::StoreError;

/// A failed connection, command or script.
pub(super) fn backend(error: redis::RedisError) -> StoreError {
    StoreError::backend(error)
}

/// No answer within `limit`: the server is unreachable or stuck.
pub(super) fn timed_out(limit: Duration) -> StoreError {
    StoreError::backend(format!("redis did not answer within {limit:?}"))
}

/// An answer no script of this version gives (a server running other code, say).
pub(super) fn unexpected(answer: &impl fmt::Debug) -> StoreError {
    StoreError::backend(format!("unexpected answer from a redis script: {answer:?}"))
}
