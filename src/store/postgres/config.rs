//! From a connection URL to a pool whose connections fail within bounded time.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};

use super::error::{backend, invalid};
use crate::store::StoreError;

/// Connections a store's pool holds at most. Each step holds one for a few round trips, so
/// a handful serve many concurrent streams; PostgreSQL's default of 100 connections leaves
/// room for several instances.
pub(super) const POOL_SIZE: usize = 16;

/// The longest a step waits for a pooled connection, for a new connection to be made, or
/// for a statement (a row lock included) to finish. Past it the step fails with
/// [`StoreErrorKind::Backend`](crate::store::StoreErrorKind::Backend): an unreachable or
/// stuck server fails closed instead of hanging a request.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// A transaction left open this long (a client that went away mid-step) is ended by the
/// server, so its channel's row lock does not outlive it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(15);

/// The longest schema name accepted: the notification channel adds a prefix and
/// PostgreSQL truncates identifiers past 63 bytes.
const MAX_SCHEMA: usize = 40;

/// `schema` if it is a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 40 bytes,
/// not `pg_…`): such a name needs no quoting, so the store may splice it into SQL.
pub(super) fn check_schema(schema: &str) -> Result<&str, StoreError> {
    let mut bytes = schema.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match first_ok && rest_ok && schema.len() <= MAX_SCHEMA && !schema.starts_with("pg_") {
        true => Ok(schema),
        false => Err(invalid()),
    }
}

/// The server settings every connection of a store in `schema` starts with: its tables
/// first on the search path, and the statement and idle-transaction limits.
pub(super) fn connection_config(url: &str, schema: &str) -> Result<Config, StoreError> {
    let mut config = Config::from_str(url).map_err(backend)?;
    let mut options = config.get_options().map(str::to_owned).unwrap_or_default();
    options.push_str(&format!(
        " -c search_path={schema} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        TIMEOUT.as_millis(),
        IDLE_IN_TRANSACTION.as_millis(),
    ));
    config.options(options.trim_start());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(TIMEOUT);
    }
    Ok(config)
}

/// A pool of at most [`POOL_SIZE`] connections, each waited for, made and checked within
/// [`TIMEOUT`].
pub(super) fn pool(config: Config) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(TIMEOUT))
        .create_timeout(Some(TIMEOUT))
        .recycle_timeout(Some(TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_schemas() {
        for good in ["public", "t_123_4", "_x", "a"] {
            assert_eq!(check_schema(good).ok(), Some(good));
        }
        let long = "x".repeat(41);
        for bad in ["", "Public", "1abc", "a-b", "a;drop", "a b", "pg_catalog", "ä", long.as_str()] {
            assert!(check_schema(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn connections_get_the_schema_and_limits() {
        let config = connection_config("postgres://u@127.0.0.1/db?options=-c%20work_mem%3D4MB", "t_1").unwrap();
        let options = config.get_options().unwrap();
        assert!(options.starts_with("-c work_mem=4MB -c search_path=t_1 "), "{options}");
        assert!(options.contains("statement_timeout=5000"), "{options}");
        assert_eq!(config.get_connect_timeout(), Some(&TIMEOUT));
        assert!(connection_config("not a url", "t").is_err());
    }
}
