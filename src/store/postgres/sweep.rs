//! Creating a channel, after sweeping the lapsed ones: what
//! [`create`](crate::store::ChannelStore::create) and
//! [`create_lapsing`](crate::store::ChannelStore::create_lapsing) share.

use std::time::{SystemTime, UNIX_EPOCH};

use super::PostgresStore;
use super::error::{backend, corrupt, exists, invalid};
use super::statements::{CREATE_LAPSING, SWEEP_LAPSED, SWEEP_OWN};
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelState, StoreError};

/// How many lapsed channels one create sweeps besides its own id.
const SWEEP_BATCH: i64 = 32;

/// The last second of 9999: later dates are as good as never, and stay far inside what a
/// `timestamptz` holds.
const LATEST_SECS: u64 = 253_402_300_799;

impl PostgresStore {
    /// Creates `id` unless it exists, lapsing at `lapses_at` if given, in one transaction
    /// that first sweeps `id` if it has lapsed, then up to [`SWEEP_BATCH`] other lapsed
    /// channels (skipping those another step holds, so creates never wait on each other).
    /// Run on its own task, so a caller that goes away cannot cut the transaction short.
    pub(super) async fn claim(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: Option<SystemTime>,
    ) -> Result<ChannelState, StoreError> {
        if accepted > deposit {
            return Err(invalid());
        }
        let (store, id) = (self.clone(), id.clone());
        let lapse = lapses_at.map(unix_micros);
        let version = tokio::spawn(async move { store.sweep_and_insert(&id, accepted, deposit, lapse).await })
            .await
            .unwrap_or_else(|joined| Err(backend(joined)))?;
        Ok(ChannelState { accepted, deposit, version, ..ChannelState::default() })
    }

    async fn sweep_and_insert(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapse: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Its own id first, waiting for its row: a racing create that swept and re-created
        // it has then committed, and the insert below finds the new row. Nothing is locked
        // before this wait, so two creates cannot deadlock.
        let own = tx.prepare_cached(SWEEP_OWN).await.map_err(backend)?;
        tx.execute(&own, &[&id.as_str()]).await.map_err(backend)?;
        let batch = tx.prepare_cached(SWEEP_LAPSED).await.map_err(backend)?;
        tx.execute(&batch, &[&SWEEP_BATCH]).await.map_err(backend)?;
        let insert = tx.prepare_cached(CREATE_LAPSING).await.map_err(backend)?;
        let (accepted, deposit) = (accepted.to_string(), deposit.to_string());
        let row = tx.query_opt(&insert, &[&id.as_str(), &accepted, &deposit, &lapse]).await.map_err(backend)?;
        // A create that finds the id taken still commits its sweep.
        tx.commit().await.map_err(backend)?;
        let version: i64 = row.ok_or_else(exists)?.try_get(0).map_err(backend)?;
        u64::try_from(version).map_err(|_| corrupt("version"))
    }
}

/// `at` in unix microseconds, capped at [`LATEST_SECS`]; 0 for a date before 1970.
fn unix_micros(at: SystemTime) -> i64 {
    let since = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros());
    i64::try_from(since.min(u128::from(LATEST_SECS) * 1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_beyond_any_timestamp_are_capped_and_never_panic() {
        assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_micros(UNIX_EPOCH + Duration::from_micros(7)), 7);
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
        assert_eq!(unix_micros(far), 253_402_300_799_000_000);
    }
}
