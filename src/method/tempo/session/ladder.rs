//! [`Ladder`]: one read of a channel's accepted vouchers, and the rules that bound them.

use std::collections::BTreeMap;
use std::ops::Bound;

use alloy::primitives::Bytes;

/// The most vouchers kept per channel. Beyond it the book thins the run above delivery
/// (see [`Ladder::trimmed`]); an honest stream keeps a handful.
pub(super) const MAX_VOUCHERS: usize = 256;

/// A channel's accepted vouchers as one read of the store found them: cumulative amount →
/// signature. Another instance may have added or dropped some since; every rule below is
/// safe under that (see [`Ladder::trimmed`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct Ladder(BTreeMap<u128, Bytes>);

impl Ladder {
    pub(super) fn new(vouchers: impl IntoIterator<Item = (u128, Bytes)>) -> Self {
        Ladder(vouchers.into_iter().collect())
    }

    #[cfg(test)]
    fn insert(&mut self, cumulative: u128, signature: Bytes) {
        self.0.insert(cumulative, signature);
    }

    pub(super) fn into_entries(self) -> impl Iterator<Item = (u128, Bytes)> {
        self.0.into_iter()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// How many vouchers lie above `spent` (what a payer has signed ahead of delivery).
    pub(super) fn ahead_of(&self, spent: u128) -> usize {
        self.0.range((Bound::Excluded(spent), Bound::Unbounded)).count()
    }

    /// The highest voucher at or below `limit` and above `settled`.
    pub(super) fn best(&self, settled: u128, limit: u128) -> Option<(u128, Bytes)> {
        if limit <= settled {
            return None;
        }
        self.0
            .range((Bound::Excluded(settled), Bound::Included(limit)))
            .next_back()
            .map(|(amount, sig)| (*amount, sig.clone()))
    }

    /// The highest voucher.
    pub(super) fn highest(&self) -> Option<(u128, Bytes)> {
        self.0.last_key_value().map(|(amount, sig)| (*amount, sig.clone()))
    }

    /// The vouchers to drop once `spent` was delivered and `settled` captured: those at or
    /// below `settled` (never capturable again), those below the floor (the highest at or
    /// below `spent`: `spent` only grows, so a lower voucher is never the best again), and,
    /// while more than [`MAX_VOUCHERS`] remain, the interior voucher whose neighbours are
    /// closest (never the lowest or the highest), so the gaps stay as even as they can.
    ///
    /// Safe against other instances trimming the same channel from their own reads at
    /// the same time, because every rule drops only what is dead or interior *in the view
    /// it was computed from*:
    ///
    /// - `settled` and `spent` only grow, so a voucher dead in one view is dead for all.
    /// - The live floor (the highest voucher at or below the current `spent`) is never
    ///   dropped: a view holding it either had `spent` at or above it (then it is that
    ///   view's floor, and only lower ones go) or below it (then it is above that view's
    ///   floor, and is not dead there).
    /// - Thinning drops a voucher only with a lower and a higher one beside it in the same
    ///   view. The highest voucher of all is never interior in a view that holds it, and
    ///   the floor is the lowest of every view that keeps it. Two instances may thin two
    ///   neighbours at once (a wider gap, still bounded by the voucher rules), never an end.
    /// - Each instance reads after it kept its voucher, so once the writes stop, the last
    ///   instance to read saw every voucher kept: the shelf ends at or below
    ///   [`MAX_VOUCHERS`].
    pub(super) fn trimmed(&self, settled: u128, spent: u128) -> Vec<u128> {
        let mut drop: Vec<u128> = self.0.range(..=settled).map(|(amount, _)| *amount).collect();
        let mut live: BTreeMap<u128, Bytes> = self
            .0
            .range((Bound::Excluded(settled), Bound::Unbounded))
            .map(|(amount, sig)| (*amount, sig.clone()))
            .collect();
        if let Some((&floor, _)) = live.range(..=spent).next_back() {
            let kept = live.split_off(&floor);
            drop.extend(live.keys().copied());
            live = kept;
        }
        while live.len() > MAX_VOUCHERS {
            let Some(victim) = closest_interior(&live) else { break };
            live.remove(&victim);
            drop.push(victim);
        }
        drop
    }
}

/// The interior voucher whose neighbours are closest together.
fn closest_interior(vouchers: &BTreeMap<u128, Bytes>) -> Option<u128> {
    let keys: Vec<u128> = vouchers.keys().copied().collect();
    keys.windows(3)
        .filter_map(|w| match w {
            [before, at, after] => Some((after.saturating_sub(*before), *at)),
            _ => None,
        })
        .min()
        .map(|(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(amounts: impl IntoIterator<Item = u128>) -> Ladder {
        Ladder::new(amounts.into_iter().map(|a| (a, Bytes::from(vec![a as u8]))))
    }

    fn after_trim(mut l: Ladder, settled: u128, spent: u128) -> Ladder {
        for amount in l.trimmed(settled, spent) {
            l.0.remove(&amount);
        }
        l
    }

    #[test]
    fn best_voucher_never_exceeds_the_limit_and_never_panics() {
        let l = ladder([10, 30, 60, 90]);
        assert_eq!(l.best(0, 75).map(|(a, _)| a), Some(60));
        assert_eq!(l.best(60, 75), None, "nothing above what is settled");
        assert_eq!(l.best(0, 5), None);
        assert_eq!(l.best(90, 0), None, "spent below settled");
        assert_eq!(l.best(0, 0), None);
        let l = after_trim(l, 30, 30);
        assert_eq!(l.best(0, 100).map(|(a, _)| a), Some(90));
        assert_eq!(l.best(0, 40), None, "settled vouchers are dropped");
    }

    #[test]
    fn only_the_floor_and_what_is_above_delivery_are_kept() {
        let l = after_trim(ladder(1..=100), 0, 98);
        assert_eq!(l.len(), 3, "98 (floor), 99, 100");
        let l = after_trim(ladder(1..=1_000), 0, 0);
        assert_eq!(l.len(), MAX_VOUCHERS);
        assert_eq!(l.highest().map(|(a, _)| a), Some(1_000));
        assert_eq!(l.best(0, 1).map(|(a, _)| a), Some(1), "the lowest is kept");
        assert_eq!(l.ahead_of(500), l.0.range(501..).count());
    }

    #[test]
    fn two_views_trimmed_at_once_keep_both_ends() {
        // Two instances each keep a voucher, then read and thin: the first to read saw its
        // own (257), the second both (258).
        let base: Vec<u128> = (1..=256).map(|a| a * 10).collect();
        let mut a = ladder(base.iter().copied());
        a.insert(2_575, Bytes::new());
        let mut b = a.clone();
        b.insert(2_585, Bytes::new());
        let mut shelf = ladder(base.iter().copied());
        shelf.insert(2_575, Bytes::new());
        shelf.insert(2_585, Bytes::new());
        for amount in a.trimmed(0, 5).into_iter().chain(b.trimmed(0, 5)) {
            shelf.0.remove(&amount);
        }
        assert!(shelf.len() <= MAX_VOUCHERS);
        assert_eq!(shelf.0.first_key_value().map(|(a, _)| *a), Some(10), "the floor stays");
        assert_eq!(shelf.highest().map(|(a, _)| a), Some(2_585), "the highest stays");
    }
}
