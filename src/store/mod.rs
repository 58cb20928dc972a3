//! Channel accounting: what each payer has paid for, spent and reserved.
//!
//! A *channel* is any account a payment funds: an MPP payment channel (funded by cumulative
//! vouchers), a prepaid balance, or the one-shot budget of a single x402 authorization.
//! Every state change is one atomic step, so several server instances (Redis, PostgreSQL)
//! can share a store without ever spending a cent twice:
//!
//! - [`open`](ChannelStore::open) creates a channel, or leaves an existing one as it is;
//! - [`create`](ChannelStore::create) creates a channel only if it does not exist yet,
//!   failing with [`StoreErrorKind::Exists`] otherwise (an atomic claim: of all racing
//!   creates of one id, exactly one succeeds);
//! - [`accept`](ChannelStore::accept) raises what the payer has paid for (monotonic);
//! - [`reserve`](ChannelStore::reserve) sets headroom aside for one response, between a
//!   minimum and a maximum, failing with [`StoreErrorKind::Insufficient`] when even the
//!   minimum is not available;
//! - [`extend`](ChannelStore::extend) grows a reservation the same way;
//! - [`commit`](ChannelStore::commit) records what a reservation has delivered so far
//!   (cumulative, so a replayed commit changes nothing);
//! - [`release`](ChannelStore::release) commits the final amount and frees the rest
//!   (a second release of the same reservation changes nothing);
//! - [`ask`](ChannelStore::ask) records what a paused stream asked the payer to sign, until
//!   it [withdraws](ChannelStore::withdraw_ask) it or the ask lapses, so a payment method
//!   can tell an asked-for voucher from one that runs ahead on its own;
//! - [`changed`](ChannelStore::changed) waits until the channel's state moves on, which is
//!   how a paused stream learns that a voucher landed.
//!
//! `available = accepted − spent − reserved`, and a store keeps `available ≥ 0` at all times.
//!
//! Backends must pass the shared conformance suite in `tests/common/store_suite.rs`.

mod memory;
mod types;

pub use memory::MemoryStore;
pub use types::{AskId, ChannelId, ChannelState, Reservation, ReservationId, StoreError, StoreErrorKind};

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::amount::Amount;

/// Atomic, linearizable-per-channel accounting. See the [module docs](self).
///
/// Implementations must fail closed: a backend that cannot make a step atomic returns an
/// error rather than a best effort.
pub trait ChannelStore: fmt::Debug + Send + Sync + 'static {
    /// Creates `id` with `accepted` already paid and a `deposit` ceiling, or returns the
    /// existing state unchanged when the channel exists.
    fn open(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Creates `id` with `accepted` already paid and a `deposit` ceiling, atomically, only
    /// if it does not exist: an existing channel is left unchanged and the call fails with
    /// [`StoreErrorKind::Exists`]. Of several racing creates of one id exactly one succeeds,
    /// which makes this the claim a one-shot payment uses against replays. `accepted` above
    /// `deposit` is [`StoreErrorKind::Invalid`].
    fn create(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// The channel's state, or `None` when it does not exist.
    fn load(&self, id: &ChannelId) -> impl Future<Output = Result<Option<ChannelState>, StoreError>> + Send;

    /// Raises `accepted` to `cumulative` and `deposit` to `deposit` where they are higher;
    /// lower values change nothing (an equal voucher is an idempotent retry). Fails with
    /// [`StoreErrorKind::NotFound`] or [`StoreErrorKind::Finalized`], and with
    /// [`StoreErrorKind::Invalid`] if `accepted` would exceed `deposit`.
    fn accept(
        &self,
        id: &ChannelId,
        cumulative: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Reserves `min(available, max)` if that is at least `min`.
    fn reserve(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send;

    /// Grows `reservation` by `min(available, max)` if that is at least `min`, returning the
    /// grown reservation. An unknown (released) reservation is [`StoreErrorKind::NotFound`].
    fn extend(
        &self,
        reservation: &Reservation,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send;

    /// Records that `reservation` has delivered `used` in total (`units` units in total).
    /// Lower or equal totals than already committed change nothing; a total above the
    /// reservation is [`StoreErrorKind::Invalid`].
    fn commit(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Commits `used` / `units` (as [`commit`](ChannelStore::commit)) and frees the rest of
    /// the reservation. Releasing an already released reservation changes nothing and
    /// returns the current state.
    fn release(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Marks the channel finalized (closed): no more accepts or reservations.
    fn finalize(&self, id: &ChannelId) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Records that the live stream `asker` asked the payer to sign up to `cumulative` (a
    /// `payment-need-voucher`), for `ttl` or until it withdraws the ask: meanwhile
    /// [`ChannelState::asked`] (the highest live ask) is at least `cumulative`. A new ask
    /// of the same asker replaces its earlier one. Asking is no payment: it does not bump
    /// `version`. A store may keep a bounded number of asks per channel (dropping the
    /// oldest). Fails with [`StoreErrorKind::NotFound`] or [`StoreErrorKind::Finalized`].
    fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Withdraws `asker`'s ask (the stream got what it asked for, or went away), so it no
    /// longer lets a voucher run ahead. Withdrawing an unknown ask changes nothing.
    fn withdraw_ask(
        &self,
        id: &ChannelId,
        asker: AskId,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;

    /// Resolves with the channel's state once its `version` is greater than `seen`.
    fn changed(&self, id: &ChannelId, seen: u64) -> impl Future<Output = Result<ChannelState, StoreError>> + Send;
}

impl<T: ChannelStore> ChannelStore for std::sync::Arc<T> {
    fn open(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).open(id, accepted, deposit)
    }
    fn create(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).create(id, accepted, deposit)
    }
    fn load(&self, id: &ChannelId) -> impl Future<Output = Result<Option<ChannelState>, StoreError>> + Send {
        (**self).load(id)
    }
    fn accept(
        &self,
        id: &ChannelId,
        cumulative: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).accept(id, cumulative, deposit)
    }
    fn reserve(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        (**self).reserve(id, min, max)
    }
    fn extend(
        &self,
        r: &Reservation,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        (**self).extend(r, min, max)
    }
    fn commit(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).commit(r, used, units)
    }
    fn release(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).release(r, used, units)
    }
    fn finalize(&self, id: &ChannelId) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).finalize(id)
    }
    fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).ask(id, asker, cumulative, ttl)
    }
    fn withdraw_ask(
        &self,
        id: &ChannelId,
        asker: AskId,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).withdraw_ask(id, asker)
    }
    fn changed(&self, id: &ChannelId, seen: u64) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).changed(id, seen)
    }
}
