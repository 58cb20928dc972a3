//! The arithmetic of one step, on figures read under the channel's row lock. Everything is
//! checked before anything is written: a refused step leaves the books as they were.

use std::time::Duration;

use super::error::{finalized, invalid, not_found};
use crate::amount::Amount;
use crate::store::arithmetic::{self, add, grant, sub};
use crate::store::{AskId, ChannelState, StoreError};

/// One open reservation, as its row holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) amount: Amount,
    pub(super) committed: Amount,
    pub(super) units: u64,
    /// The last renewal's provisional figures, which count only if the lease lapses.
    pub(super) delivered: Amount,
    pub(super) delivered_units: u64,
}

impl Held {
    /// What a reclaim charges: the larger of the committed and the renewed figures.
    pub(super) fn reclaimed(&self) -> (Amount, u64) {
        (self.committed.max(self.delivered), self.units.max(self.delivered_units))
    }
}

/// What a step does to the reservation it names, written after the channel row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeldChange {
    Untouched,
    /// New figures, and the lease restarts.
    Renewed,
    Released,
    Opened(Amount),
}

/// What a step does to the channel's asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AskChange {
    Untouched,
    Put { asker: AskId, cumulative: Amount, ttl: Duration },
    Withdrawn(AskId),
}

/// The channel as one step sees and changes it.
#[derive(Debug)]
pub(super) struct Ledger {
    pub(super) state: ChannelState,
    /// The reservation the step names, if it is still held (not released, not reclaimed).
    pub(super) held: Option<Held>,
    pub(super) held_change: HeldChange,
    pub(super) ask_change: AskChange,
    /// A usage record to append with the step (only a step that released sets it).
    pub(super) usage: Option<Vec<u8>>,
    /// The usage record head of the reservation the step opens, if a reclaim must record it.
    pub(super) opened_head: Option<Vec<u8>>,
    /// Whether the step's deposit claim was made by it (see `step_claiming`).
    pub(super) fresh: bool,
}

impl Ledger {
    fn held(&mut self) -> Result<&mut Held, StoreError> {
        self.held.as_mut().ok_or_else(not_found)
    }

    pub(super) fn accept(&mut self, cumulative: Amount, deposit: Amount) -> Result<(), StoreError> {
        if self.state.finalized {
            return Err(finalized());
        }
        let deposit = self.state.deposit.max(deposit);
        let accepted = self.state.accepted.max(cumulative);
        if accepted > deposit {
            return Err(invalid());
        }
        (self.state.accepted, self.state.deposit) = (accepted, deposit);
        Ok(())
    }

    pub(super) fn reserve(&mut self, min: Amount, max: Amount) -> Result<Amount, StoreError> {
        let amount = grant(&self.state, min, max)?;
        self.state.reserved = add(self.state.reserved, amount)?;
        self.held_change = HeldChange::Opened(amount);
        Ok(amount)
    }

    /// [`reserve`](Self::reserve), keeping `head` for a reclaim to complete.
    pub(super) fn reserve_recording(&mut self, min: Amount, max: Amount, head: Vec<u8>) -> Result<Amount, StoreError> {
        let amount = self.reserve(min, max)?;
        self.opened_head = Some(head);
        Ok(amount)
    }

    pub(super) fn extend(&mut self, min: Amount, max: Amount) -> Result<Amount, StoreError> {
        let held = *self.held()?;
        let grant = grant(&self.state, min, max)?;
        let amount = add(held.amount, grant)?;
        self.state.reserved = add(self.state.reserved, grant)?;
        self.held = Some(Held { amount, ..held });
        self.held_change = HeldChange::Renewed;
        Ok(amount)
    }

    pub(super) fn commit(&mut self, used: Amount, units: u64) -> Result<(), StoreError> {
        let mut held = *self.held()?;
        commit(&mut self.state, &mut held, used, units)?;
        self.held = Some(held);
        self.held_change = HeldChange::Renewed;
        Ok(())
    }

    /// Releasing what is not held (any more) changes nothing.
    pub(super) fn release(&mut self, used: Amount, units: u64) -> Result<(), StoreError> {
        let Some(held) = self.held else { return Ok(()) };
        self.state = released(&self.state, held, used, units)?;
        self.held_change = HeldChange::Released;
        Ok(())
    }

    /// [`release`](Self::release), with `record` appended when it releases.
    pub(super) fn release_with_usage(&mut self, used: Amount, units: u64, record: Vec<u8>) -> Result<(), StoreError> {
        let Some(held) = self.held else { return Ok(()) };
        self.state = released(&self.state, held, used, units)?;
        self.held_change = HeldChange::Released;
        self.usage = Some(record);
        Ok(())
    }

    /// Adds `amount` to the balance (accepted and deposit).
    pub(super) fn credit(&mut self, amount: Amount) -> Result<(), StoreError> {
        if self.state.finalized {
            return Err(finalized());
        }
        self.state.accepted = add(self.state.accepted, amount)?;
        self.state.deposit = add(self.state.deposit, amount)?;
        Ok(())
    }

    pub(super) fn renew(&mut self, delivered: Amount, units: u64) -> Result<(), StoreError> {
        let held = self.held()?;
        if delivered > held.amount {
            return Err(invalid());
        }
        held.delivered = held.delivered.max(delivered);
        held.delivered_units = held.delivered_units.max(units);
        self.held_change = HeldChange::Renewed;
        Ok(())
    }

    pub(super) fn finalize(&mut self) -> Result<(), StoreError> {
        self.state.finalized = true;
        Ok(())
    }

    pub(super) fn ask(&mut self, asker: AskId, cumulative: Amount, ttl: Duration) -> Result<(), StoreError> {
        if self.state.finalized {
            return Err(finalized());
        }
        self.ask_change = AskChange::Put { asker, cumulative, ttl };
        Ok(())
    }

    pub(super) fn withdraw_ask(&mut self, asker: AskId) -> Result<(), StoreError> {
        self.ask_change = AskChange::Withdrawn(asker);
        Ok(())
    }
}

/// Reclaims lapsed leases (`(row id, held)`) into `state` the way a release with the larger
/// of committed and renewed usage would, returning the ids reclaimed. A lease whose reclaim
/// would overflow stays held, whole, rather than half reclaimed.
pub(super) fn reclaim(state: &mut ChannelState, lapsed: &[(i64, Held)]) -> Vec<i64> {
    let mut reclaimed = Vec::new();
    for &(id, held) in lapsed {
        let (used, units) = held.reclaimed();
        if let Ok(after) = released(state, held, used, units) {
            *state = after;
            reclaimed.push(id);
        }
    }
    reclaimed
}

/// `state` after `held` commits `used` / `units` and frees the rest.
fn released(state: &ChannelState, mut held: Held, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
    let mut state = state.clone();
    commit(&mut state, &mut held, used, units)?;
    state.reserved = sub(state.reserved, sub(held.amount, held.committed)?)?;
    Ok(state)
}

/// Raises `held`'s committed totals to `used` / `units` and moves the difference from
/// reserved to spent.
fn commit(state: &mut ChannelState, held: &mut Held, used: Amount, units: u64) -> Result<(), StoreError> {
    arithmetic::commit(state, held.amount, &mut held.committed, &mut held.units, used, units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u128) -> Amount {
        Amount::new(n)
    }

    fn held(amount: u128, committed: u128, delivered: u128) -> Held {
        Held { amount: a(amount), committed: a(committed), units: 1, delivered: a(delivered), delivered_units: 4 }
    }

    #[test]
    fn reclaim_spends_the_larger_figure_and_frees_the_rest() {
        let mut state = ChannelState {
            accepted: a(100),
            deposit: a(100),
            spent: a(15),
            reserved: a(45),
            units: 2,
            ..Default::default()
        };
        let reclaimed = reclaim(&mut state, &[(1, held(50, 10, 30)), (2, held(10, 5, 0))]);
        assert_eq!(reclaimed, vec![1, 2]);
        // 30 of the first (renewed above committed), 5 of the second (committed); each held
        // had committed 1 unit and renewed 4.
        assert_eq!((state.spent, state.reserved, state.units), (a(35), a(0), 8));
    }

    #[test]
    fn a_reclaim_that_would_overflow_stays_held() {
        let mut state =
            ChannelState { accepted: a(100), deposit: a(100), reserved: a(50), units: u64::MAX, ..Default::default() };
        let before = state.clone();
        assert!(reclaim(&mut state, &[(7, held(50, 0, 20))]).is_empty());
        assert_eq!(state, before);
    }
}
