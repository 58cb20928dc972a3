//! A paused stream's ask, recorded in the store while the stream waits for the voucher
//! that answers it, and withdrawn when it stops waiting.

use std::sync::Arc;

use tokio::runtime::Handle;

use crate::amount::Amount;
use crate::metering::account::detach;
use crate::store::{AskId, ChannelId, ChannelState, ChannelStore, StoreError};

/// Withdraws the stream's ask when dropped: once the stream got its voucher (it resumed or
/// reserved), or went away. A voucher that runs ahead of delivery is accepted only up to a
/// live ask, so an ask left behind by a stream that is gone would let the payer sign far
/// ahead and never spend it (what a v1 close cannot capture).
pub(crate) struct AskGuard<St: ChannelStore> {
    store: Arc<St>,
    channel: ChannelId,
    asker: AskId,
    runtime: Option<Handle>,
}

impl<St: ChannelStore> AskGuard<St> {
    /// A guard for a new asker on `channel`.
    pub(crate) fn new(store: Arc<St>, channel: ChannelId) -> Self {
        AskGuard { store, channel, asker: AskId::new(), runtime: Handle::try_current().ok() }
    }

    /// Records (or replaces) this stream's ask of `cumulative` for `ttl`.
    pub(crate) fn ask(
        &self,
        cumulative: Amount,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send + 'static {
        let (store, channel, asker) = (self.store.clone(), self.channel.clone(), self.asker);
        async move { store.ask(&channel, asker, cumulative, ttl).await }
    }
}

impl<St: ChannelStore> Drop for AskGuard<St> {
    fn drop(&mut self) {
        let (store, channel, asker) = (self.store.clone(), self.channel.clone(), self.asker);
        // Runs to its end whoever waits (as a release does); an ask that cannot be
        // withdrawn (store down) still lapses with its deadline.
        drop(detach(async move { store.withdraw_ask(&channel, asker).await }, self.runtime.as_ref()));
    }
}
