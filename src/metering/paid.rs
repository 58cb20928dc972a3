//! [`Paid`]: what admission hands the metering body, whole.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::StreamPolicy;
use super::account::Account;
use crate::amount::Quote;
use crate::method::{Grant, Proof};
use crate::observe::Observed;
use crate::store::{ChannelStore, Reservation};

/// A paid request: the grant its method issued (channel, renewal, receipt, settled hook),
/// the quote, the meter for its response, and how its stream asks for more.
pub(crate) struct Paid<Mt> {
    pub(crate) grant: Grant,
    pub(crate) quote: Quote,
    pub(crate) meter: Mt,
    pub(crate) policy: StreamPolicy,
    /// Its span and series labels (empty without `tracing` and `metrics`).
    pub(crate) observed: Observed,
}

/// A paid request whose upfront is reserved: the response is metered against `account`.
pub(crate) struct Reserved<Mt, St: ChannelStore> {
    pub(crate) paid: Paid<Mt>,
    pub(crate) account: Account<St>,
    /// The settlement's proof the response waits for, if the grant proves its payment.
    pub(crate) proof: Option<ProofWait>,
}

/// A response's wait for its settlement's [`Proof`]: what comes, or `pending` if it is late.
pub(crate) struct ProofWait {
    pub(crate) proof: oneshot::Receiver<Proof>,
    pub(crate) pending: Proof,
}

impl<Mt, St: ChannelStore> Reserved<Mt, St> {
    /// `paid` drawing on `lease`; the account runs the grant's settled hook once released
    /// and hands its proof, if it makes one, to `proof`.
    pub(crate) fn new(mut paid: Paid<Mt>, store: Arc<St>, lease: Reservation) -> Self {
        let (sender, proof) = match paid.grant.take_pending_proof() {
            Some(pending) => {
                let (sender, proof) = oneshot::channel();
                (Some(sender), Some(ProofWait { proof, pending }))
            }
            None => (None, None),
        };
        let account = Account::new(store, lease, paid.grant.take_settled_hook(), sender)
            .recording(paid.grant.take_usage_hook())
            .observed(paid.observed.clone());
        Reserved { paid, account, proof }
    }
}
