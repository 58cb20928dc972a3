//! Growing a stream's lease: one store round trip per window, not per frame.

use std::future::Future;

use crate::account::Account;
use crate::amount::Amount;
use crate::store::{ChannelState, ChannelStore, Reservation, StoreErrorKind};

/// Why the lease could not grow.
pub(super) enum Growth {
    /// The channel has less available than the next frame needs (state included, for the
    /// need-voucher event).
    Short(ChannelState),
    /// The store refused or failed (closed channel, backend down).
    Failed,
}

/// Grows the lease by at least `need`, asking for `window` more.
///
/// Nothing is committed mid-stream: a reconciling meter may still lower the total (an
/// estimate replaced by the provider's count), and commits only ever go up.
pub(super) fn grow<St: ChannelStore>(
    account: &Account<St>,
    need: Amount,
    window: Amount,
) -> impl Future<Output = Result<Reservation, Growth>> + Send + 'static {
    let store = account.store().clone();
    let lease = account.lease().clone();
    async move {
        match store.extend(&lease, need, need.saturating_add(window)).await {
            Ok(grown) => Ok(grown),
            Err(e) if matches!(e.kind(), StoreErrorKind::Insufficient { .. }) => match store.load(&lease.channel).await
            {
                Ok(Some(state)) => Err(Growth::Short(state)),
                Ok(None) => Err(Growth::Failed),
                Err(_) => Err(Growth::Failed),
            },
            Err(_) => Err(Growth::Failed),
        }
    }
}
