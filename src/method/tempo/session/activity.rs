//! [`Activity`]: when each channel's store state last moved, for idle closes.
//!
//! Kept in memory, per instance: losing it (a restart) only starts the idle clock again,
//! so an idle close comes later, never earlier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::B256;
use tokio::time::Instant;

/// The store version last seen per channel, and since when.
#[derive(Debug, Default)]
pub(crate) struct Activity(Mutex<HashMap<B256, (u64, Instant)>>);

impl Activity {
    /// How long the channel's store state has stayed at `version` as far as this instance
    /// saw (zero when it just moved, or when this instance looks for the first time).
    pub(crate) fn unchanged_for(&self, channel: B256, version: u64) -> Duration {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let at = seen.entry(channel).or_insert((version, now));
        if at.0 != version {
            *at = (version, now);
        }
        now.saturating_duration_since(at.1)
    }

    pub(crate) fn forget(&self, channel: B256) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
    }
}
