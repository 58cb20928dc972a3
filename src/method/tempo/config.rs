//! [`SessionConfig`]: what a Tempo session offer advertises.

use alloy::primitives::Address;

use super::SessionProtocol;
use crate::amount::Amount;

/// The canonical TIP-1034 channel reserve (v2 escrow) on every Tempo chain.
pub const CHANNEL_RESERVE: Address = alloy::primitives::address!("4d50500000000000000000000000000000000000");

/// pathUSD, the default TIP-20 on Tempo test networks.
pub const PATH_USD: Address = alloy::primitives::address!("20c0000000000000000000000000000000000000");

/// What a session offer advertises: chain, escrow, token, payee and limits.
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The chain id (always sent).
    pub chain_id: u64,
    /// The escrow: the v1 contract, or [`CHANNEL_RESERVE`] for v2.
    pub escrow: Address,
    /// Which channel protocol.
    pub protocol: SessionProtocol,
    /// The TIP-20 token paid in.
    pub currency: Address,
    /// The payee.
    pub recipient: Address,
    /// A hint for the client's deposit.
    pub suggested_deposit: Option<Amount>,
    /// The least a voucher must raise the cumulative amount by (advertised as
    /// `minVoucherDelta`). When unset, one unit's price (rounded down, at least one base
    /// unit) is required but not advertised.
    pub min_voucher_delta: Option<Amount>,
    /// How far one voucher may run ahead of what the channel has delivered and set aside
    /// (`spent + reserved`). When unset: two of the layer's voucher windows plus four
    /// units, which covers what a stream asks for (a window beyond its next frame).
    ///
    /// This is also what a v1 channel may leave uncaptured at most: the v1 escrow pays out
    /// a voucher exactly, and the payee captures the highest one at or below what was
    /// delivered, so the payer never pays for undelivered units. A stream that asks for
    /// more (an upfront or a hidden-output allowance) records its ask in the store, and a
    /// voucher may run up to a live ask.
    ///
    /// The default follows the price of the route the voucher is posted to, and a channel
    /// spans every route of the realm: **set it explicitly when one layer sells at several
    /// prices** (per-model LLM prices), e.g. two windows at the cheapest price, or a payer
    /// could post a voucher to the dearest route and spend the headroom on the cheapest.
    pub max_voucher_ahead: Option<Amount>,
}

impl SessionConfig {
    /// A v1 (escrow contract) session on `chain_id` paying `recipient` in `currency`.
    pub fn v1(chain_id: u64, escrow: Address, currency: Address, recipient: Address) -> Self {
        SessionConfig {
            chain_id,
            escrow,
            protocol: SessionProtocol::V1,
            currency,
            recipient,
            suggested_deposit: None,
            min_voucher_delta: None,
            max_voucher_ahead: None,
        }
    }

    /// A v2 (TIP-1034 channel reserve) session on `chain_id`.
    pub fn v2(chain_id: u64, currency: Address, recipient: Address) -> Self {
        SessionConfig {
            protocol: SessionProtocol::V2,
            escrow: CHANNEL_RESERVE,
            ..SessionConfig::v1(chain_id, CHANNEL_RESERVE, currency, recipient)
        }
    }

    /// Sets the suggested deposit.
    pub fn suggested_deposit(mut self, amount: Amount) -> Self {
        self.suggested_deposit = Some(amount);
        self
    }

    /// Sets the minimum voucher delta.
    pub fn min_voucher_delta(mut self, amount: Amount) -> Self {
        self.min_voucher_delta = Some(amount);
        self
    }

    /// Sets how far one voucher may run ahead of delivery (see
    /// [`max_voucher_ahead`](SessionConfig::max_voucher_ahead)).
    pub fn max_voucher_ahead(mut self, amount: Amount) -> Self {
        self.max_voucher_ahead = Some(amount);
        self
    }
}
