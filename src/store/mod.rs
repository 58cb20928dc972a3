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
//!   [`create_lapsing`](ChannelStore::create_lapsing) does the same for a claim that may
//!   be forgotten after a date;
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
//! - [`credit`](ChannelStore::credit) adds a deposit to a prepaid balance, once per
//!   deposit reference (an on-chain transaction hash): the claim of the reference and the
//!   credit are one step, so racing claims of one deposit credit it once;
//! - [`release_with_usage`](ChannelStore::release_with_usage) releases a reservation and
//!   appends a usage record to the channel in the same step, so a balance and its usage
//!   history never drift apart; [`usage`](ChannelStore::usage) reads the records back;
//! - [`reserve_recording`](ChannelStore::reserve_recording) reserves like `reserve`, with
//!   the head of a usage record that a [reclaim](self#leases) of the reservation completes
//!   and appends, so a lapsed prepaid response is recorded as well as debited;
//! - [`changed`](ChannelStore::changed) waits until the channel's state moves on, which is
//!   how a paused stream learns that a voucher landed.
//!
//! `available = accepted − spent − reserved`, and a store keeps `available ≥ 0` at all times.
//!
//! # Leases
//!
//! A reservation is a *lease*: it lapses [`lease`](ChannelStore::lease) after it was last
//! taken, grown or renewed. A streaming holder [renews](ChannelStore::renew) it as it goes,
//! with what it has delivered so far (a provisional figure, folded into its window growth).
//! When a holder dies (a crashed or killed instance), its lease is reclaimed at the next
//! step on the channel: the larger of its committed and its last renewed usage is spent, the
//! rest is free again. So the seller loses at most what was delivered since the last
//! renewal, and the payer never pays for more than was delivered.
//!
//! # What settlement needs
//!
//! A payment method keeps its own per-channel data in the store too, so a restart or
//! another instance finds it: [`keep`](ChannelStore::keep) puts a value on a named *shelf*
//! (accepted vouchers keyed by amount, a channel descriptor), [`kept`](ChannelStore::kept)
//! reads a shelf back, [`shelved`](ChannelStore::shelved) lists the channels with something
//! on a shelf. [`lock`](ChannelStore::lock) gives one holder at a time a named job (one
//! settler per channel across instances).
//!
//! Backends must pass the shared conformance suite in `tests/common/store_suite.rs`.

mod arithmetic;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod types;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
pub use types::{
    AskId, ChannelId, ChannelState, Credited, DEFAULT_LEASE, LockHolder, MAX_USAGE_RECORDS, Reservation, ReservationId,
    StoreError, StoreErrorKind, reclaimed_record,
};

use bytes::Bytes;

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

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

    /// [`create`](ChannelStore::create), and in the same atomic step records that the
    /// channel and everything kept for it (its shelf entries on every shelf, its
    /// [`shelved`](ChannelStore::shelved) listings, its usage records, reservations and
    /// asks) may be forgotten once `lapses_at` has passed: a
    /// one-shot claim whose authorization the chain refuses after a date need not be
    /// remembered long after it.
    ///
    /// Lapsed channels are swept by later calls of `create` and `create_lapsing` (the id
    /// being created if it has lapsed, plus a bounded batch of the longest-lapsed others),
    /// so a store holds about as many lapsing channels as are live. Until it is swept a
    /// lapsed channel is still there: [`load`](ChannelStore::load) returns it and every
    /// step works on it as before. Creating a lapsed id sweeps it first, so the id can be
    /// claimed afresh. `lapses_at` is compared with the backend's clock (the system clock
    /// for [`MemoryStore`], the server's for Redis and PostgreSQL); a date already past is
    /// allowed (the channel is swept by the next create).
    ///
    /// A lapsing channel is a claim, not a balance: what it holds is forgotten with it, so
    /// do not [`credit`](ChannelStore::credit) it (a store may or may not forget the
    /// deposit references credited to it).
    ///
    /// The default (for stores that predate it) is plain [`create`](ChannelStore::create):
    /// such a store never forgets the channel, which is correct but grows without bound.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tollgate::store::StoreError> {
    /// use std::time::{Duration, SystemTime};
    /// use bytes::Bytes;
    /// use tollgate::Amount;
    /// use tollgate::store::{ChannelId, ChannelStore, MemoryStore, StoreErrorKind};
    ///
    /// let store = MemoryStore::new();
    /// let (five, hour) = (Amount::new(5), Duration::from_secs(3600));
    /// let claim = ChannelId::new("authorization-1");
    /// store.create_lapsing(&claim, five, five, SystemTime::now() + hour).await?;
    /// // Single use while it lives.
    /// let again = store.create_lapsing(&claim, five, five, SystemTime::now() + hour).await;
    /// assert_eq!(again.unwrap_err().kind(), &StoreErrorKind::Exists);
    ///
    /// // One whose date has passed goes, with its shelves, at the next create.
    /// let old = ChannelId::new("authorization-0");
    /// store.create_lapsing(&old, five, five, SystemTime::now() - hour).await?;
    /// store.keep(&old, "settled", five, Bytes::from_static(b"tx")).await?;
    /// store.create(&ChannelId::new("another"), Amount::ZERO, Amount::ZERO).await?;
    /// assert_eq!(store.load(&old).await?, None);
    /// assert!(store.kept(&old, "settled").await?.is_empty());
    /// assert!(store.load(&claim).await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: SystemTime,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        let _ = lapses_at;
        self.create(id, accepted, deposit)
    }

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

    /// Reserves `min(available, max)` if that is at least `min`, for one
    /// [lease](ChannelStore::lease).
    fn reserve(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send;

    /// Grows `reservation` by `min(available, max)` if that is at least `min`, returning the
    /// grown reservation, and restarts its lease. An unknown (released or reclaimed)
    /// reservation is [`StoreErrorKind::NotFound`].
    fn extend(
        &self,
        reservation: &Reservation,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send;

    /// Records that `reservation` has delivered `used` in total (`units` units in total).
    /// Lower or equal totals than already committed change nothing; a total above the
    /// reservation is [`StoreErrorKind::Invalid`]. Restarts the lease.
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

    /// Credits `amount` to channel `id` (a prepaid balance: `accepted` and `deposit` both
    /// grow by it), creating the channel when it does not exist, and claims `deposit_ref`
    /// in the same atomic step. A reference claimed before changes nothing and answers the
    /// channel as it is with [`Credited::fresh`] `false`: of several racing credits of one
    /// reference exactly one is fresh. The reference must determine the channel (an
    /// on-chain transfer's sender does); a store may keep references per channel.
    /// [`StoreErrorKind::Finalized`] on a closed channel, [`StoreErrorKind::Invalid`] when
    /// the balance would leave the store's range ([`max_amount`](ChannelStore::max_amount)).
    ///
    /// The default refuses ([`StoreErrorKind::Backend`]): a store that cannot make the claim
    /// and the credit one step must not pretend to.
    fn credit(
        &self,
        id: &ChannelId,
        amount: Amount,
        deposit_ref: &str,
    ) -> impl Future<Output = Result<Credited, StoreError>> + Send {
        let _ = (id, amount, deposit_ref);
        std::future::ready(Err(StoreError::backend("this store does not keep prepaid balances")))
    }

    /// [`release`](ChannelStore::release), and `record` appended to the channel's usage
    /// history in the same atomic step. Only the step that actually releases the
    /// reservation appends: a repeated release changes nothing and appends nothing. A store
    /// keeps the newest [`MAX_USAGE_RECORDS`] per channel.
    ///
    /// The default refuses, like [`credit`](ChannelStore::credit)'s.
    fn release_with_usage(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
        record: Bytes,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        let _ = (reservation, used, units, record);
        std::future::ready(Err(StoreError::backend("this store does not keep usage records")))
    }

    /// [`reserve`](ChannelStore::reserve), keeping `head` with the reservation: should the
    /// reservation be reclaimed (its holder's lease lapsed), the reclaim appends the usage
    /// record [`reclaimed_record`]`(head, used, units)` in the same atomic step that debits
    /// it, so a balance and its usage history agree even when a holder dies. `head` is a
    /// JSON object with at least one member and its closing brace left off
    /// (`{"path":"/v1/chat"`); the reclaim adds the units, the cost and
    /// `"reclaimed":true`. A reservation released with
    /// [`release_with_usage`](ChannelStore::release_with_usage) (or `release`) drops its
    /// head: exactly one step ends a reservation, so exactly one record is written.
    ///
    /// The default refuses, like [`credit`](ChannelStore::credit)'s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tollgate::store::StoreError> {
    /// use bytes::Bytes;
    /// use tollgate::Amount;
    /// use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
    ///
    /// let store = MemoryStore::new();
    /// let id = ChannelId::new("payer");
    /// store.credit(&id, Amount::new(100), "deposit-1").await?;
    /// let head = Bytes::from_static(br#"{"path":"/v1/chat""#);
    /// let lease = store.reserve_recording(&id, Amount::new(1), Amount::new(10), head).await?;
    /// // Released by its holder: the holder's record is the only one.
    /// store.release_with_usage(&lease, Amount::new(4), 2, Bytes::from_static(br#"{"cost":"4"}"#)).await?;
    /// assert_eq!(store.usage(&id, 10).await?, vec![Bytes::from_static(br#"{"cost":"4"}"#)]);
    /// # Ok(())
    /// # }
    /// ```
    fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Bytes,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        let _ = (id, min, max, head);
        std::future::ready(Err(StoreError::backend("this store does not keep usage records")))
    }

    /// The newest `limit` usage records of channel `id`, newest first (empty when none).
    fn usage(&self, id: &ChannelId, limit: usize) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send {
        let _ = (id, limit);
        std::future::ready(Err(StoreError::backend("this store does not keep usage records")))
    }

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

    /// How long a reservation lives unless its holder extends, commits or renews it (see
    /// [Leases](self#leases)). A holder renews well within it (a third is the rule).
    fn lease(&self) -> Duration {
        DEFAULT_LEASE
    }

    /// The largest amount (and unit count) this store keeps exactly: an `accepted`,
    /// `deposit` or ask above it is [`StoreErrorKind::Invalid`]. A caller checks amounts from
    /// outside (an on-chain deposit) against it before it commits to them elsewhere (a
    /// broadcast transaction), so a store's range never strands a payer's funds in a
    /// channel the server cannot account for. Unbounded (`u128::MAX`) unless a backend
    /// says otherwise.
    fn max_amount(&self) -> Amount {
        Amount::new(u128::MAX)
    }

    /// Renews `reservation`'s lease and records that it has delivered `delivered` so far
    /// (`units` units): a provisional figure that counts only if the holder dies (the lease
    /// is then reclaimed with the larger of it and what was committed). Lower figures than
    /// an earlier renewal change nothing but the lease; a figure above the reservation is
    /// [`StoreErrorKind::Invalid`]. A released or reclaimed reservation is
    /// [`StoreErrorKind::NotFound`]: its holder must stop delivering. Renewing does not
    /// bump `version`.
    fn renew(
        &self,
        reservation: &Reservation,
        delivered: Amount,
        units: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Puts `value` on `shelf` for channel `id` under `key`, replacing what was there. A
    /// shelf is method data settlement needs (accepted vouchers, a descriptor); the caller
    /// bounds how much it keeps per channel. Needs no channel state: a shelf may be written
    /// before the channel is opened. Write before the content or the 204 is released.
    fn keep(
        &self,
        id: &ChannelId,
        shelf: &str,
        key: Amount,
        value: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// What `shelf` holds for `id`, by ascending key (empty when nothing).
    fn kept(
        &self,
        id: &ChannelId,
        shelf: &str,
    ) -> impl Future<Output = Result<Vec<(Amount, Bytes)>, StoreError>> + Send;

    /// Removes `keys` from `id`'s `shelf` (all of them when `keys` is `None`). Unknown keys
    /// change nothing.
    fn discard(
        &self,
        id: &ChannelId,
        shelf: &str,
        keys: Option<&[Amount]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The channels that have something on `shelf`.
    fn shelved(&self, shelf: &str) -> impl Future<Output = Result<Vec<ChannelId>, StoreError>> + Send;

    /// Takes the job `name` for `holder` for `ttl`, or renews it if `holder` has it already.
    /// `false` when another holder has it and its time has not run out.
    fn lock(
        &self,
        name: &str,
        holder: LockHolder,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up the job `name` if `holder` has it; otherwise changes nothing.
    fn unlock(&self, name: &str, holder: LockHolder) -> impl Future<Output = Result<(), StoreError>> + Send;
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
    fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: SystemTime,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).create_lapsing(id, accepted, deposit, lapses_at)
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
    fn credit(
        &self,
        id: &ChannelId,
        amount: Amount,
        deposit_ref: &str,
    ) -> impl Future<Output = Result<Credited, StoreError>> + Send {
        (**self).credit(id, amount, deposit_ref)
    }
    fn release_with_usage(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
        record: Bytes,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        (**self).release_with_usage(r, used, units, record)
    }
    fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Bytes,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        (**self).reserve_recording(id, min, max, head)
    }
    fn usage(&self, id: &ChannelId, limit: usize) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send {
        (**self).usage(id, limit)
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
    fn lease(&self) -> Duration {
        (**self).lease()
    }
    fn max_amount(&self) -> Amount {
        (**self).max_amount()
    }
    fn renew(
        &self,
        r: &Reservation,
        delivered: Amount,
        units: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).renew(r, delivered, units)
    }
    fn keep(
        &self,
        id: &ChannelId,
        shelf: &str,
        key: Amount,
        value: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).keep(id, shelf, key, value)
    }
    fn kept(
        &self,
        id: &ChannelId,
        shelf: &str,
    ) -> impl Future<Output = Result<Vec<(Amount, Bytes)>, StoreError>> + Send {
        (**self).kept(id, shelf)
    }
    fn discard(
        &self,
        id: &ChannelId,
        shelf: &str,
        keys: Option<&[Amount]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).discard(id, shelf, keys)
    }
    fn shelved(&self, shelf: &str) -> impl Future<Output = Result<Vec<ChannelId>, StoreError>> + Send {
        (**self).shelved(shelf)
    }
    fn lock(
        &self,
        name: &str,
        holder: LockHolder,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).lock(name, holder, ttl)
    }
    fn unlock(&self, name: &str, holder: LockHolder) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).unlock(name, holder)
    }
}
