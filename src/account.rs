//! [`Account`]: one response's lease on a channel, released exactly once.

use std::fmt;
use std::sync::Arc;

use tokio::runtime::Handle;

use crate::amount::Amount;
use crate::method::Settled;
use crate::store::{ChannelState, ChannelStore, Reservation, StoreError};

type SettledHook = Box<dyn FnOnce(Settled) + Send>;

/// A response's reservation plus what it has delivered so far.
///
/// Dropping it unreleased (the client went away, the body was dropped mid-stream) spawns
/// the release on the runtime it was created on, committing exactly what was delivered.
/// `Drop` cannot await, hence the spawn; it never panics.
pub(crate) struct Account<St: ChannelStore> {
    store: Arc<St>,
    lease: Reservation,
    used: Amount,
    units: u64,
    on_settled: Option<SettledHook>,
    runtime: Option<Handle>,
    armed: bool,
}

impl<St: ChannelStore> Account<St> {
    pub(crate) fn new(store: Arc<St>, lease: Reservation, on_settled: Option<SettledHook>) -> Self {
        Account {
            store,
            lease,
            used: Amount::ZERO,
            units: 0,
            on_settled,
            runtime: Handle::try_current().ok(),
            armed: true,
        }
    }

    pub(crate) fn store(&self) -> &Arc<St> {
        &self.store
    }

    pub(crate) fn lease(&self) -> &Reservation {
        &self.lease
    }

    /// Records that this response has now delivered `total` (its cumulative cost, which
    /// a reconciled meter may lower) over `units` units. The caller has checked that the
    /// lease covers it.
    pub(crate) fn deliver(&mut self, total: Amount, units: u64) {
        debug_assert!(total <= self.lease.amount);
        self.used = total;
        self.units = units;
    }

    pub(crate) fn grown(&mut self, lease: Reservation) {
        debug_assert_eq!(lease.id, self.lease.id);
        self.lease = lease;
    }

    /// Commits what was delivered and frees the rest; runs the settled hook.
    pub(crate) fn release(mut self) -> impl Future<Output = Result<ChannelState, StoreError>> + Send + 'static {
        self.armed = false;
        let (store, lease, used, units, hook) =
            (self.store.clone(), self.lease.clone(), self.used, self.units, self.on_settled.take());
        async move {
            let result = store.release(&lease, used, units).await;
            if let Some(hook) = hook {
                let state = result.as_ref().ok().cloned();
                hook(Settled { channel: lease.channel.clone(), used, units, state });
            }
            result
        }
    }
}

impl<St: ChannelStore> Drop for Account<St> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let runtime = self.runtime.take();
        let release = Account {
            store: self.store.clone(),
            lease: self.lease.clone(),
            used: self.used,
            units: self.units,
            on_settled: self.on_settled.take(),
            runtime: None,
            armed: false,
        }
        .release();
        // Without a runtime (a body driven by hand outside tokio) the release cannot run;
        // the reservation then stays until the store's own clean-up.
        if let Some(runtime) = runtime {
            runtime.spawn(release);
        }
    }
}

impl<St: ChannelStore> fmt::Debug for Account<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("lease", &self.lease)
            .field("used", &self.used)
            .field("units", &self.units)
            .field("armed", &self.armed)
            .finish()
    }
}
