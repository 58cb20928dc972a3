//! [`ChargeConfig`]: what a Tempo charge offer advertises.

use std::fmt;

use alloy::primitives::{Address, B256};

use crate::amount::Amount;

/// The most splits a charge may carry (§5.1).
pub(crate) const MAX_SPLITS: usize = 10;

/// What a charge offer advertises besides its amount (which is the route's price): chain,
/// token, payee, and optionally splits, a fixed memo and the accepted modes.
///
/// ```
/// use alloy::primitives::address;
/// use tollgate::Amount;
/// use tollgate::method::tempo::{ChargeConfig, ChargeModes, PATH_USD, Split};
///
/// let payee = address!("0x1111111111111111111111111111111111111111");
/// let platform = address!("0x2222222222222222222222222222222222222222");
/// let config = ChargeConfig::new(42431, PATH_USD, payee)
///     .splits(vec![Split::new(platform, Amount::new(100))])
///     .modes(ChargeModes::Pull);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeConfig {
    /// The chain id (always sent).
    pub chain_id: u64,
    /// The TIP-20 token paid in.
    pub currency: Address,
    /// The primary payee; it gets the amount minus the splits.
    pub recipient: Address,
    /// Other payees, each with a fixed share of every charge (0 or 1–10 entries, each
    /// above zero). A request whose price does not exceed their sum is not offered.
    pub splits: Vec<Split>,
    /// A fixed memo the primary transfer must carry. Without one, a payment must carry the
    /// challenge-bound attribution memo ([`attribution_memo`](super::attribution_memo)),
    /// which stops a payment from being used against another challenge; with one, only
    /// the transaction hash guards against reuse.
    pub memo: Option<B256>,
    /// Which credential types are accepted.
    pub modes: ChargeModes,
}

/// One additional payee of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Who is paid.
    pub recipient: Address,
    /// How much, per charge (above zero).
    pub amount: Amount,
    /// A memo this transfer must carry (`None`: any or none).
    pub memo: Option<B256>,
}

/// The credential types a charge accepts (`methodDetails.supportedModes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeModes {
    /// Both; the offer leaves `supportedModes` out, which means both.
    #[default]
    PullAndPush,
    /// `pull` only: the client sends the signed transaction and the server broadcasts it.
    Pull,
    /// `push` only: the client broadcasts and sends the transaction hash.
    Push,
}

/// Why a [`ChargeConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeConfigError {
    /// More than ten splits.
    TooManySplits {
        /// How many were given.
        count: usize,
    },
    /// A split of zero.
    ZeroSplit {
        /// Its position.
        index: usize,
    },
    /// The splits add up to more than an amount can hold.
    SplitOverflow,
}

impl fmt::Display for ChargeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChargeConfigError::TooManySplits { count } => {
                write!(f, "a charge takes at most {MAX_SPLITS} splits, not {count}")
            }
            ChargeConfigError::ZeroSplit { index } => write!(f, "split {index} is zero"),
            ChargeConfigError::SplitOverflow => f.write_str("the splits overflow an amount"),
        }
    }
}

impl std::error::Error for ChargeConfigError {}

impl Split {
    /// `amount` to `recipient`, with no memo required.
    pub fn new(recipient: Address, amount: Amount) -> Self {
        Split { recipient, amount, memo: None }
    }

    /// Requires this memo on the split's transfer.
    pub fn memo(mut self, memo: B256) -> Self {
        self.memo = Some(memo);
        self
    }
}

impl ChargeModes {
    /// Whether `pull` (a signed transaction) is accepted.
    pub fn pull(self) -> bool {
        self != ChargeModes::Push
    }

    /// Whether `push` (a transaction hash) is accepted.
    pub fn push(self) -> bool {
        self != ChargeModes::Pull
    }

    /// The `supportedModes` value to advertise (`None`: leave it out).
    pub(crate) fn advertised(self) -> Option<&'static [&'static str]> {
        match self {
            ChargeModes::PullAndPush => None,
            ChargeModes::Pull => Some(&["pull"]),
            ChargeModes::Push => Some(&["push"]),
        }
    }
}

impl ChargeConfig {
    /// A charge on `chain_id` paying `recipient` in `currency`: no splits, no fixed memo,
    /// both modes.
    pub fn new(chain_id: u64, currency: Address, recipient: Address) -> Self {
        ChargeConfig { chain_id, currency, recipient, splits: Vec::new(), memo: None, modes: ChargeModes::default() }
    }

    /// Sets the splits (checked by [`validate`](Self::validate)).
    pub fn splits(mut self, splits: Vec<Split>) -> Self {
        self.splits = splits;
        self
    }

    /// Sets a fixed memo for the primary transfer.
    pub fn memo(mut self, memo: B256) -> Self {
        self.memo = Some(memo);
        self
    }

    /// Sets the accepted modes.
    pub fn modes(mut self, modes: ChargeModes) -> Self {
        self.modes = modes;
        self
    }

    /// Checks the splits: at most ten, each above zero, a sum that fits.
    pub fn validate(&self) -> Result<(), ChargeConfigError> {
        if self.splits.len() > MAX_SPLITS {
            return Err(ChargeConfigError::TooManySplits { count: self.splits.len() });
        }
        if let Some(index) = self.splits.iter().position(|s| s.amount.is_zero()) {
            return Err(ChargeConfigError::ZeroSplit { index });
        }
        self.split_total().map(drop).ok_or(ChargeConfigError::SplitOverflow)
    }

    /// The sum of the splits, `None` on overflow.
    pub(crate) fn split_total(&self) -> Option<Amount> {
        self.splits.iter().try_fold(Amount::ZERO, |sum, split| sum.checked_add(split.amount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(amount: u128) -> Split {
        Split::new(Address::repeat_byte(7), Amount::new(amount))
    }

    #[test]
    fn splits_are_checked() {
        let base = ChargeConfig::new(1, Address::ZERO, Address::repeat_byte(1));
        assert_eq!(base.validate(), Ok(()));
        assert_eq!(base.clone().splits(vec![split(1); MAX_SPLITS]).validate(), Ok(()));
        let many = base.clone().splits(vec![split(1); MAX_SPLITS + 1]);
        assert_eq!(many.validate(), Err(ChargeConfigError::TooManySplits { count: 11 }));
        let zero = base.clone().splits(vec![split(1), split(0)]);
        assert_eq!(zero.validate(), Err(ChargeConfigError::ZeroSplit { index: 1 }));
        let huge = base.splits(vec![split(u128::MAX), split(1)]);
        assert_eq!(huge.validate(), Err(ChargeConfigError::SplitOverflow));
    }

    #[test]
    fn modes() {
        assert!(ChargeModes::PullAndPush.pull() && ChargeModes::PullAndPush.push());
        assert!(ChargeModes::Pull.pull() && !ChargeModes::Pull.push());
        assert!(!ChargeModes::Push.pull() && ChargeModes::Push.push());
        assert_eq!(ChargeModes::PullAndPush.advertised(), None);
        assert_eq!(ChargeModes::Push.advertised(), Some(&["push"][..]));
    }
}
