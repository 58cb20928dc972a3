//! Growing a stream's lease: one renewal and one extend per window, not per frame.

use std::future::Future;

use tokio::time::Instant;

use crate::amount::Amount;
use crate::metering::account::{Account, Delivered};
use crate::store::{ChannelState, ChannelStore, Reservation, StoreErrorKind};

/// Why the lease could not grow.
pub(super) enum Growth {
    /// The channel has less available than the next frame needs (state included, for the
    /// need-voucher event).
    Short(ChannelState),
    /// The store answered that the lease is gone (reclaimed): deliver nothing more.
    Lost,
    /// The store refused or failed (closed channel, backend down).
    Failed,
}

/// What a growth did: the grown lease (or why not), and when the store restarted the
/// lease, with the figure it recorded if the renewal went through.
pub(super) struct Grown {
    pub(super) outcome: Result<Reservation, Growth>,
    pub(super) restarted: Option<(Instant, Option<Delivered>)>,
}

/// Renews the lease with what was delivered so far, then grows it by at least `need`,
/// asking for `window` more.
///
/// The renewal rides along with the growth, so a stream that streams fast reports its
/// delivery once per window and needs no timed renewals. A renewal that fails in the
/// backend does not stop the growth (the extend restarts the lease too; the figure waits
/// for the next renewal). Nothing is committed mid-stream: a reconciling meter may still
/// lower the total (an estimate replaced by the provider's count), and commits only ever
/// go up; renewals are provisional and the release's figure wins.
pub(super) fn grow<St: ChannelStore>(
    account: &Account<St>,
    need: Amount,
    window: Amount,
) -> impl Future<Output = Grown> + Send + 'static {
    let store = account.store().clone();
    let lease = account.lease().clone();
    let delivered = account.delivered();
    async move {
        let sent = Instant::now();
        let renewed = match store.renew(&lease, delivered.amount, delivered.units).await {
            Ok(()) => Some(delivered),
            Err(e) if *e.kind() == StoreErrorKind::NotFound => {
                return Grown { outcome: Err(Growth::Lost), restarted: None };
            }
            Err(_) => None,
        };
        let restarted = renewed.map(|delivered| (sent, Some(delivered)));
        let outcome = match store.extend(&lease, need, need.saturating_add(window)).await {
            Ok(grown) => return Grown { outcome: Ok(grown), restarted: Some((sent, renewed)) },
            Err(e) if *e.kind() == StoreErrorKind::NotFound => Err(Growth::Lost),
            Err(e) if matches!(e.kind(), StoreErrorKind::Insufficient { .. }) => match store.load(&lease.channel).await
            {
                Ok(Some(state)) => Err(Growth::Short(state)),
                Ok(None) => Err(Growth::Failed),
                Err(_) => Err(Growth::Failed),
            },
            Err(_) => Err(Growth::Failed),
        };
        Grown { outcome, restarted }
    }
}
