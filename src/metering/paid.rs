//! [`Paid`]: what admission hands the metering body, whole.

use std::sync::Arc;

use super::StreamPolicy;
use super::account::Account;
use crate::amount::Quote;
use crate::method::Grant;
use crate::store::{ChannelStore, Reservation};

/// A paid request: the grant its method issued (channel, renewal, receipt, settled hook),
/// the quote, the meter for its response, and how its stream asks for more.
pub(crate) struct Paid<Mt> {
    pub(crate) grant: Grant,
    pub(crate) quote: Quote,
    pub(crate) meter: Mt,
    pub(crate) policy: StreamPolicy,
}

/// A paid request whose upfront is reserved: the response is metered against `account`.
pub(crate) struct Reserved<Mt, St: ChannelStore> {
    pub(crate) paid: Paid<Mt>,
    pub(crate) account: Account<St>,
}

impl<Mt, St: ChannelStore> Reserved<Mt, St> {
    /// `paid` drawing on `lease`; the account runs the grant's settled hook once released.
    pub(crate) fn new(mut paid: Paid<Mt>, store: Arc<St>, lease: Reservation) -> Self {
        let account =
            Account::new(store, lease, paid.grant.take_settled_hook()).recording(paid.grant.take_usage_hook());
        Reserved { paid, account }
    }
}
