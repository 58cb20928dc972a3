//! [`MemoryStore`]: a [`ChannelStore`] kept in this process's memory.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::arithmetic::{self, add, grant, invalid, sub};
use super::{
    AskId, ChannelId, ChannelState, ChannelStore, Credited, DEFAULT_LEASE, LockHolder, MAX_USAGE_RECORDS, Reservation,
    ReservationId, StoreError, StoreErrorKind, reclaimed_record,
};
use crate::amount::Amount;

/// A [`ChannelStore`] in this process's memory.
///
/// Right for a single server instance, tests and examples. The accounting is
/// **per process**: it is not shared between instances and does not survive a restart, so
/// two instances behind a load balancer would each let a payer spend the same voucher. Run
/// several instances on a shared backend: [`RedisStore`](super::RedisStore) (feature `redis`) or
/// [`PostgresStore`](super::PostgresStore) (feature `postgres`).
///
/// Channels do not contend with each other: a map lock is taken only to find or insert a
/// channel, and each channel's state sits behind its own mutex, which is never held across
/// an `.await`. Every operation but [`changed`](ChannelStore::changed) completes without
/// waiting.
///
/// Channels are kept until the store is dropped, so memory grows with the number of
/// channels seen, except for those made with
/// [`create_lapsing`](ChannelStore::create_lapsing): they are swept (with their shelves)
/// by later creates once they have lapsed. Clones share the same state; a clone is how
/// tests stand in for a second instance on one shared store.
///
/// Leases lapse on tokio's clock (so paused-time tests can run them out). Lapsing
/// channels lapse on the system clock instead: their date is a wall-clock date (an
/// authorization's validity end), which a monotonic `Instant` cannot name exactly.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct MemoryStore {
    channels: Arc<RwLock<Channels>>,
    shelves: Arc<Mutex<Shelves>>,
    locks: Arc<Mutex<Locks>>,
    /// Claimed deposit references and the channel each credited.
    credits: Arc<Mutex<HashMap<String, ChannelId>>>,
    lease: Duration,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            channels: Arc::default(),
            shelves: Arc::default(),
            locks: Arc::default(),
            credits: Arc::default(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// Every shelf's contents, by channel and shelf name (by channel first, so a swept channel's
/// shelves go in one step).
type Shelves = HashMap<ChannelId, HashMap<String, BTreeMap<Amount, Bytes>>>;

/// How many lapsed channels one create sweeps besides its own id: enough to outpace the
/// creates that add them, small enough to keep a create short.
const SWEEP_BATCH: usize = 32;

/// The channels, and the lapsing ones by when they lapse.
#[derive(Default)]
struct Channels {
    by_id: HashMap<ChannelId, Arc<Channel>>,
    /// Oldest first; an entry for every channel with a `lapses_at`.
    lapses: BTreeSet<(SystemTime, ChannelId)>,
}

impl Channels {
    /// Removes `id` if it has lapsed by `now`, and up to [`SWEEP_BATCH`] other lapsed
    /// channels, oldest first; the ids removed.
    fn sweep(&mut self, id: &ChannelId, now: SystemTime) -> Vec<ChannelId> {
        let mut swept = Vec::new();
        if let Some(at) = self.by_id.get(id).and_then(|channel| channel.lapses_at)
            && at <= now
        {
            self.lapses.remove(&(at, id.clone()));
            self.by_id.remove(id);
            swept.push(id.clone());
        }
        for _ in 0..SWEEP_BATCH {
            match self.lapses.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, gone)) = self.lapses.pop_first() {
                self.by_id.remove(&gone);
                swept.push(gone);
            }
        }
        swept
    }
}

/// Process-wide rather than per store, so a reservation handed to the wrong store is never
/// mistaken for one of that store's own.
static NEXT_RESERVATION: AtomicU64 = AtomicU64::new(1);

struct Channel {
    lease: Duration,
    /// When a channel made by `create_lapsing` may be swept.
    lapses_at: Option<SystemTime>,
    ledger: Mutex<Ledger>,
    /// Mirrors `ledger.state.version` for [`ChannelStore::changed`] waiters.
    version: watch::Sender<u64>,
}

struct Ledger {
    state: ChannelState,
    reservations: HashMap<ReservationId, Held>,
    /// Live asks and when they lapse, per asker; kept apart from `state` so that asking
    /// never bumps the version (it is no payment, and paused streams must not wake on it).
    asks: HashMap<AskId, (Amount, Instant)>,
    /// Usage records, newest last; written under the same lock as the release they record.
    usage: VecDeque<Bytes>,
    /// The record heads of reservations taken with `reserve_recording`, which a reclaim
    /// completes and appends; dropped with the reservation however it ends.
    heads: HashMap<ReservationId, Bytes>,
}

/// The job locks and when each lapses.
#[derive(Default)]
struct Locks {
    held: HashMap<String, (LockHolder, Instant)>,
    /// How many locks there may be before lapsed ones are swept again: twice what the last
    /// sweep left, so sweeping costs O(1) per lock taken however many are live (locks never
    /// unlocked, like spent SIWX nonces, can be many).
    sweep_at: usize,
}

/// The most asks one channel keeps (one per paused stream); past it the oldest goes.
const MAX_ASKS: usize = 64;

impl Ledger {
    /// The state as callers see it: with the highest live ask, if any.
    fn view(&self) -> ChannelState {
        let now = Instant::now();
        let asked = self.asks.values().filter(|(_, until)| now < *until).map(|(asked, _)| *asked).max();
        ChannelState { asked: asked.unwrap_or(Amount::ZERO), ..self.state.clone() }
    }
}

/// One open reservation, as the store sees it.
#[derive(Clone, Copy, Debug)]
struct Held {
    amount: Amount,
    committed: Amount,
    units: u64,
    /// The last renewal's provisional figures, which count only if the lease lapses.
    delivered: Amount,
    delivered_units: u64,
    until: Instant,
}

impl Held {
    fn new(amount: Amount, lease: Duration) -> Self {
        Held {
            amount,
            committed: Amount::ZERO,
            units: 0,
            delivered: Amount::ZERO,
            delivered_units: 0,
            until: crate::clock::after(lease),
        }
    }
}

impl Ledger {
    /// Appends `record`, dropping the oldest past [`MAX_USAGE_RECORDS`].
    fn record(&mut self, record: Bytes) {
        if self.usage.len() >= MAX_USAGE_RECORDS {
            self.usage.pop_front();
        }
        self.usage.push_back(record);
    }

    /// Releases every lapsed lease with the larger of its committed and renewed usage. Each
    /// one is reclaimed whole or not at all (an overflow leaves it held, never half-done).
    fn reclaim(&mut self) {
        let now = Instant::now();
        if self.reservations.values().all(|held| held.until > now) {
            return;
        }
        let lapsed: Vec<ReservationId> =
            self.reservations.iter().filter(|(_, held)| held.until <= now).map(|(id, _)| *id).collect();
        for id in lapsed {
            let Some(&held) = self.reservations.get(&id) else { continue };
            let (mut state, mut held) = (self.state.clone(), held);
            let (used, units) = (held.committed.max(held.delivered), held.units.max(held.delivered_units));
            let reclaimed = commit(&mut state, &mut held, used, units).and_then(|()| {
                state.reserved = sub(state.reserved, sub(held.amount, held.committed)?)?;
                Ok(())
            });
            if reclaimed.is_ok() {
                self.state = state;
                self.reservations.remove(&id);
                if let Some(head) = self.heads.remove(&id) {
                    self.record(Bytes::from(reclaimed_record(&head, used, units)));
                }
            }
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a reservation lives without renewal (default
    /// [`DEFAULT_LEASE`](super::DEFAULT_LEASE)); applies to channels opened from now on.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn shelves(&self) -> Result<MutexGuard<'_, Shelves>, StoreError> {
        self.shelves.lock().map_err(|_| poisoned())
    }

    fn lookup(&self, id: &ChannelId) -> Result<Option<Arc<Channel>>, StoreError> {
        let channels = self.channels.read().map_err(|_| poisoned())?;
        Ok(channels.by_id.get(id).cloned())
    }

    fn channel(&self, id: &ChannelId) -> Result<Arc<Channel>, StoreError> {
        self.lookup(id)?.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))
    }

    /// The channel `id`, created with these figures when it does not exist yet.
    fn get_or_create(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<Arc<Channel>, StoreError> {
        if let Some(channel) = self.lookup(id)? {
            return Ok(channel);
        }
        let mut channels = self.channels.write().map_err(|_| poisoned())?;
        // Another open may have won the race since the read lock was dropped.
        let entry = channels.by_id.entry(id.clone());
        Ok(Arc::clone(entry.or_insert_with(|| Arc::new(Channel::new(accepted, deposit, self.lease, None)))))
    }

    /// Creates `id` unless it exists, lapsing at `lapses_at` if given, after sweeping
    /// lapsed channels (`id` among them): one step under the map's write lock.
    fn claim(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: Option<SystemTime>,
    ) -> Result<ChannelState, StoreError> {
        if accepted > deposit {
            return Err(invalid());
        }
        let mut channels = self.channels.write().map_err(|_| poisoned())?;
        // Taken before anything changes, so a poisoned lock leaves everything as it was.
        let mut shelves = self.shelves()?;
        for gone in channels.sweep(id, SystemTime::now()) {
            shelves.remove(&gone);
        }
        drop(shelves);
        // Checked under the write lock: another create may have won since any read.
        let channel = match channels.by_id.entry(id.clone()) {
            Entry::Occupied(_) => return Err(exists()),
            Entry::Vacant(slot) => {
                Arc::clone(slot.insert(Arc::new(Channel::new(accepted, deposit, self.lease, lapses_at))))
            }
        };
        if let Some(at) = lapses_at {
            channels.lapses.insert((at, id.clone()));
        }
        channel.snapshot()
    }
}

impl MemoryStore {
    /// Reserves, keeping `head` for a reclaim to complete (see
    /// [`ChannelStore::reserve_recording`]).
    fn reserve_with(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Option<Bytes>,
    ) -> Result<Reservation, StoreError> {
        let channel = self.channel(id)?;
        let rid = ReservationId(NEXT_RESERVATION.fetch_add(1, Ordering::Relaxed));
        let (amount, _) = channel.update(|ledger| {
            let amount = grant(&ledger.state, min, max)?;
            ledger.state.reserved = add(ledger.state.reserved, amount)?;
            ledger.reservations.insert(rid, Held::new(amount, channel.lease));
            if let Some(head) = head {
                ledger.heads.insert(rid, head);
            }
            Ok(amount)
        })?;
        Ok(Reservation { channel: id.clone(), id: rid, amount })
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels = self.channels.read().map(|c| c.by_id.len()).ok();
        f.debug_struct("MemoryStore").field("channels", &channels).finish()
    }
}

impl Channel {
    fn new(accepted: Amount, deposit: Amount, lease: Duration, lapses_at: Option<SystemTime>) -> Self {
        // Version 1, so `changed(id, 0)` ("never seen it") resolves at once.
        let state = ChannelState { accepted, deposit, version: 1, ..ChannelState::default() };
        Channel {
            lease,
            lapses_at,
            version: watch::Sender::new(state.version),
            ledger: Mutex::new(Ledger {
                state,
                reservations: HashMap::new(),
                asks: HashMap::new(),
                usage: VecDeque::new(),
                heads: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Ledger>, StoreError> {
        // A panic under the lock is a bug; fail closed rather than trust what it left.
        self.ledger.lock().map_err(|_| poisoned())
    }

    /// The state, after reclaiming lapsed leases (which wakes waiters like any change).
    fn snapshot(&self) -> Result<ChannelState, StoreError> {
        Ok(self.update(|_| Ok(()))?.1)
    }

    /// Runs `f` under the channel's lock. `f` checks everything before it writes, so an
    /// error leaves the ledger untouched. A change bumps the version and wakes waiters; a
    /// no-op does not.
    fn update<T>(&self, f: impl FnOnce(&mut Ledger) -> Result<T, StoreError>) -> Result<(T, ChannelState), StoreError> {
        let mut ledger = self.lock()?;
        let before = ledger.state.clone();
        let version = before.version.checked_add(1).ok_or_else(invalid)?;
        // Lapsed leases go first, whatever the step: a dead holder's hold never blocks it.
        ledger.reclaim();
        let out = match f(&mut ledger) {
            Ok(out) => out,
            Err(error) => {
                // The step failed but the reclaim stands: announce it if it changed anything.
                if ledger.state != before {
                    ledger.state.version = version;
                    self.version.send_replace(version);
                }
                return Err(error);
            }
        };
        if ledger.state != before {
            ledger.state.version = version;
            // Still under the lock, so waiters see versions in order.
            self.version.send_replace(version);
        }
        Ok((out, ledger.view()))
    }
}

/// Raises `held`'s committed totals to `used` / `units`, on copies the caller writes back.
fn commit(state: &mut ChannelState, held: &mut Held, used: Amount, units: u64) -> Result<(), StoreError> {
    arithmetic::commit(state, held.amount, &mut held.committed, &mut held.units, used, units)
}

fn exists() -> StoreError {
    StoreError::new(StoreErrorKind::Exists)
}

fn not_found() -> StoreError {
    StoreError::new(StoreErrorKind::NotFound)
}

fn poisoned() -> StoreError {
    StoreError::backend("memory store lock poisoned by a panic")
}

impl ChannelStore for MemoryStore {
    async fn open(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        if accepted > deposit {
            return Err(invalid());
        }
        self.get_or_create(id, accepted, deposit)?.snapshot()
    }

    async fn create(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        self.claim(id, accepted, deposit, None)
    }

    async fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: SystemTime,
    ) -> Result<ChannelState, StoreError> {
        self.claim(id, accepted, deposit, Some(lapses_at))
    }

    async fn load(&self, id: &ChannelId) -> Result<Option<ChannelState>, StoreError> {
        self.lookup(id)?.map(|channel| channel.snapshot()).transpose()
    }

    async fn accept(&self, id: &ChannelId, cumulative: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        let channel = self.channel(id)?;
        let ((), state) = channel.update(|ledger| {
            let state = &mut ledger.state;
            if state.finalized {
                return Err(StoreError::new(StoreErrorKind::Finalized));
            }
            let deposit = state.deposit.max(deposit);
            let accepted = state.accepted.max(cumulative);
            if accepted > deposit {
                return Err(invalid());
            }
            state.deposit = deposit;
            state.accepted = accepted;
            Ok(())
        })?;
        Ok(state)
    }

    async fn reserve(&self, id: &ChannelId, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        self.reserve_with(id, min, max, None)
    }

    async fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Bytes,
    ) -> Result<Reservation, StoreError> {
        self.reserve_with(id, min, max, Some(head))
    }

    async fn extend(&self, reservation: &Reservation, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        let channel = self.channel(&reservation.channel)?;
        let (amount, _) = channel.update(|ledger| {
            let held = ledger.reservations.get_mut(&reservation.id).ok_or_else(not_found)?;
            let grant = grant(&ledger.state, min, max)?;
            let amount = add(held.amount, grant)?;
            ledger.state.reserved = add(ledger.state.reserved, grant)?;
            held.amount = amount;
            held.until = crate::clock::after(channel.lease);
            Ok(amount)
        })?;
        Ok(Reservation { amount, ..reservation.clone() })
    }

    async fn commit(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let channel = self.channel(&reservation.channel)?;
        let ((), state) = channel.update(|ledger| {
            let slot = ledger.reservations.get_mut(&reservation.id).ok_or_else(not_found)?;
            let (mut state, mut held) = (ledger.state.clone(), *slot);
            commit(&mut state, &mut held, used, units)?;
            held.until = crate::clock::after(channel.lease);
            (ledger.state, *slot) = (state, held);
            Ok(())
        })?;
        Ok(state)
    }

    async fn release(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let channel = self.channel(&reservation.channel)?;
        let ((), state) = channel.update(|ledger| {
            // Already released (or never ours): releasing is idempotent.
            let Some(&held) = ledger.reservations.get(&reservation.id) else {
                return Ok(());
            };
            let (mut state, mut held) = (ledger.state.clone(), held);
            commit(&mut state, &mut held, used, units)?;
            state.reserved = sub(state.reserved, sub(held.amount, held.committed)?)?;
            ledger.state = state;
            ledger.reservations.remove(&reservation.id);
            ledger.heads.remove(&reservation.id);
            Ok(())
        })?;
        Ok(state)
    }

    async fn credit(&self, id: &ChannelId, amount: Amount, deposit_ref: &str) -> Result<Credited, StoreError> {
        // Held for the whole step (never across an await), so a claim and its credit are
        // one: a racing credit of the same reference sees it claimed.
        let mut credits = self.credits.lock().map_err(|_| poisoned())?;
        if let Some(credited) = credits.get(deposit_ref) {
            let state = self.channel(credited)?.snapshot()?;
            return Ok(Credited { state, fresh: false });
        }
        let channel = self.get_or_create(id, Amount::ZERO, Amount::ZERO)?;
        let ((), state) = channel.update(|ledger| {
            let state = &mut ledger.state;
            if state.finalized {
                return Err(StoreError::new(StoreErrorKind::Finalized));
            }
            (state.accepted, state.deposit) = (add(state.accepted, amount)?, add(state.deposit, amount)?);
            Ok(())
        })?;
        credits.insert(deposit_ref.to_owned(), id.clone());
        Ok(Credited { state, fresh: true })
    }

    async fn release_with_usage(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
        record: Bytes,
    ) -> Result<ChannelState, StoreError> {
        let channel = self.channel(&reservation.channel)?;
        let ((), state) = channel.update(|ledger| {
            let Some(&held) = ledger.reservations.get(&reservation.id) else {
                return Ok(());
            };
            let (mut state, mut held) = (ledger.state.clone(), held);
            commit(&mut state, &mut held, used, units)?;
            state.reserved = sub(state.reserved, sub(held.amount, held.committed)?)?;
            ledger.state = state;
            ledger.reservations.remove(&reservation.id);
            ledger.heads.remove(&reservation.id);
            ledger.record(record);
            Ok(())
        })?;
        Ok(state)
    }

    async fn usage(&self, id: &ChannelId, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        let Some(channel) = self.lookup(id)? else { return Ok(Vec::new()) };
        let ledger = channel.lock()?;
        Ok(ledger.usage.iter().rev().take(limit).cloned().collect())
    }

    async fn finalize(&self, id: &ChannelId) -> Result<ChannelState, StoreError> {
        let channel = self.channel(id)?;
        let ((), state) = channel.update(|ledger| {
            ledger.state.finalized = true;
            Ok(())
        })?;
        Ok(state)
    }

    async fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> Result<ChannelState, StoreError> {
        let channel = self.channel(id)?;
        let mut ledger = channel.lock()?;
        if ledger.state.finalized {
            return Err(StoreError::new(StoreErrorKind::Finalized));
        }
        let now = Instant::now();
        ledger.asks.retain(|_, (_, until)| now < *until);
        if ledger.asks.len() >= MAX_ASKS && !ledger.asks.contains_key(&asker) {
            let oldest = ledger.asks.iter().min_by_key(|(_, (_, until))| *until).map(|(key, _)| *key);
            if let Some(key) = oldest {
                ledger.asks.remove(&key);
            }
        }
        ledger.asks.insert(asker, (cumulative, crate::clock::after(ttl)));
        Ok(ledger.view())
    }

    async fn withdraw_ask(&self, id: &ChannelId, asker: AskId) -> Result<ChannelState, StoreError> {
        let channel = self.channel(id)?;
        let mut ledger = channel.lock()?;
        ledger.asks.remove(&asker);
        Ok(ledger.view())
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    async fn renew(&self, reservation: &Reservation, delivered: Amount, units: u64) -> Result<(), StoreError> {
        let channel = self.channel(&reservation.channel)?;
        channel.update(|ledger| {
            let held = ledger.reservations.get_mut(&reservation.id).ok_or_else(not_found)?;
            if delivered > held.amount {
                return Err(invalid());
            }
            held.delivered = held.delivered.max(delivered);
            held.delivered_units = held.delivered_units.max(units);
            held.until = crate::clock::after(channel.lease);
            Ok(())
        })?;
        Ok(())
    }

    async fn keep(&self, id: &ChannelId, shelf: &str, key: Amount, value: Bytes) -> Result<(), StoreError> {
        let mut shelves = self.shelves()?;
        shelves.entry(id.clone()).or_default().entry(shelf.to_owned()).or_default().insert(key, value);
        Ok(())
    }

    async fn kept(&self, id: &ChannelId, shelf: &str) -> Result<Vec<(Amount, Bytes)>, StoreError> {
        let shelves = self.shelves()?;
        let kept = shelves.get(id).and_then(|of_channel| of_channel.get(shelf));
        Ok(kept.map(|k| k.iter().map(|(key, value)| (*key, value.clone())).collect()).unwrap_or_default())
    }

    async fn discard(&self, id: &ChannelId, shelf: &str, keys: Option<&[Amount]>) -> Result<(), StoreError> {
        let mut shelves = self.shelves()?;
        let Some(of_channel) = shelves.get_mut(id) else { return Ok(()) };
        match keys {
            None => drop(of_channel.remove(shelf)),
            Some(keys) => {
                if let Some(kept) = of_channel.get_mut(shelf) {
                    keys.iter().for_each(|key| drop(kept.remove(key)));
                    if kept.is_empty() {
                        of_channel.remove(shelf);
                    }
                }
            }
        }
        if of_channel.is_empty() {
            shelves.remove(id);
        }
        Ok(())
    }

    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, StoreError> {
        let shelves = self.shelves()?;
        Ok(shelves.iter().filter(|(_, of_channel)| of_channel.contains_key(shelf)).map(|(id, _)| id.clone()).collect())
    }

    async fn lock(&self, name: &str, holder: LockHolder, ttl: Duration) -> Result<bool, StoreError> {
        let mut locks = self.locks.lock().map_err(|_| poisoned())?;
        let now = Instant::now();
        if locks.held.len() >= locks.sweep_at {
            locks.held.retain(|_, (_, until)| now < *until);
            locks.sweep_at = locks.held.len().saturating_mul(2).max(64);
        }
        match locks.held.get(name) {
            // A lapsed lock is free, swept or not.
            Some((other, until)) if *other != holder && now < *until => Ok(false),
            _ => {
                locks.held.insert(name.to_owned(), (holder, crate::clock::after(ttl)));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, name: &str, holder: LockHolder) -> Result<(), StoreError> {
        let mut locks = self.locks.lock().map_err(|_| poisoned())?;
        if locks.held.get(name).is_some_and(|(other, _)| *other == holder) {
            locks.held.remove(name);
        }
        Ok(())
    }

    async fn changed(&self, id: &ChannelId, seen: u64) -> Result<ChannelState, StoreError> {
        let channel = self.channel(id)?;
        // `wait_for` looks at the current version before it sleeps, so a change that landed
        // before this call (or while subscribing) is not missed.
        let mut versions = channel.version.subscribe();
        versions
            .wait_for(|version| *version > seen)
            .await
            .map(drop)
            // The sender lives in `channel`, which this future holds.
            .map_err(|_| StoreError::backend("memory store channel dropped"))?;
        channel.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::mpsc;
    use std::task::{Context, Poll, Waker};
    use std::thread;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// Runs a memory store operation, which must complete without waiting.
    fn now<F: Future>(future: F) -> F::Output {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(future).poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a memory store operation waited"),
        }
    }

    fn a(n: u128) -> Amount {
        Amount::new(n)
    }

    fn opened(store: &MemoryStore, name: &str, accepted: u128) -> ChannelId {
        let id = ChannelId::new(name);
        now(store.open(&id, a(accepted), a(accepted))).unwrap();
        id
    }

    #[test]
    fn channels_do_not_block_each_other() {
        let store = MemoryStore::new();
        let (busy, idle) = (opened(&store, "busy", 100), opened(&store, "idle", 100));
        let reserve_on = |id: &ChannelId| {
            let (store, id, (tx, rx)) = (store.clone(), id.clone(), mpsc::channel());
            thread::spawn(move || tx.send(now(store.reserve(&id, a(1), a(1)))).unwrap());
            rx
        };

        // Hold `busy`'s lock, as a long critical section would.
        let channel = store.channel(&busy).unwrap();
        let guard = channel.lock().unwrap();
        let on_idle = reserve_on(&idle);
        assert!(on_idle.recv_timeout(Duration::from_secs(10)).unwrap().is_ok());
        let on_busy = reserve_on(&busy);
        assert!(on_busy.recv_timeout(Duration::from_millis(100)).is_err(), "lock not taken");
        drop(guard);
        assert!(on_busy.recv_timeout(Duration::from_secs(10)).unwrap().is_ok());
    }

    #[test]
    fn clones_share_state_and_debug_counts_channels() {
        let store = MemoryStore::new();
        let id = opened(&store.clone(), "shared", 10);
        assert_eq!(now(store.load(&id)).unwrap().unwrap().accepted, a(10));
        assert_eq!(format!("{store:?}"), "MemoryStore { channels: Some(1) }");
    }

    #[test]
    fn a_reservation_from_another_store_is_not_ours() {
        let (first, second) = (MemoryStore::new(), MemoryStore::new());
        let id = opened(&first, "same-name", 10);
        opened(&second, "same-name", 10);
        let theirs = now(first.reserve(&id, a(4), a(4))).unwrap();
        let ours = now(second.reserve(&id, a(6), a(6))).unwrap();
        assert_ne!(theirs.id, ours.id);
        assert_eq!(now(second.release(&theirs, a(4), 1)).unwrap().reserved, a(6));
    }

    #[test]
    fn unit_overflow_is_invalid_and_changes_nothing() {
        let store = MemoryStore::new();
        let id = opened(&store, "units", 10);
        let first = now(store.reserve(&id, a(1), a(1))).unwrap();
        now(store.commit(&first, a(1), u64::MAX)).unwrap();
        let second = now(store.reserve(&id, a(1), a(1))).unwrap();
        let before = now(store.load(&id)).unwrap();
        let err = now(store.commit(&second, a(1), 1)).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::Invalid);
        assert_eq!(now(store.load(&id)).unwrap(), before);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Accept(u128, u128),
        Reserve(u128, u128),
        Extend(usize, u128, u128),
        Commit(usize, u128, u64),
        Release(usize, u128, u64),
        Finalize,
    }

    fn op() -> impl Strategy<Value = Op> {
        let (n, units) = (0..120u128, 0..20u64);
        prop_oneof![
            (n.clone(), 0..400u128).prop_map(|(c, d)| Op::Accept(c, d)),
            (n.clone(), n.clone()).prop_map(|(min, max)| Op::Reserve(min, max)),
            (any::<usize>(), n.clone(), n.clone()).prop_map(|(r, min, max)| Op::Extend(r, min, max)),
            (any::<usize>(), n.clone(), units.clone()).prop_map(|(r, u, k)| Op::Commit(r, u, k)),
            (any::<usize>(), n, units).prop_map(|(r, u, k)| Op::Release(r, u, k)),
            Just(Op::Finalize),
        ]
    }

    proptest! {
        /// Whatever the sequence, the ledger adds up, failures change nothing, and the
        /// version moves exactly when the state does.
        #[test]
        fn ledger_invariants_hold(ops in prop::collection::vec(op(), 1..60)) {
            let store = MemoryStore::new();
            let id = opened(&store, "prop", 50);
            let channel = store.channel(&id).unwrap();
            let mut issued: Vec<Reservation> = Vec::new();
            let pick = |issued: &[Reservation], i: usize| issued.get(i % issued.len().max(1)).cloned();
            for op in ops {
                let before = now(store.load(&id)).unwrap().unwrap();
                let result = match op {
                    Op::Accept(c, d) => now(store.accept(&id, a(c), a(d))).map(drop),
                    Op::Reserve(min, max) => now(store.reserve(&id, a(min), a(max)))
                        .map(|r| issued.push(r)),
                    Op::Extend(i, min, max) => match pick(&issued, i) {
                        Some(r) => now(store.extend(&r, a(min), a(max))).map(drop),
                        None => continue,
                    },
                    Op::Commit(i, used, units) => match pick(&issued, i) {
                        Some(r) => now(store.commit(&r, a(used), units)).map(drop),
                        None => continue,
                    },
                    Op::Release(i, used, units) => match pick(&issued, i) {
                        Some(r) => now(store.release(&r, a(used), units)).map(drop),
                        None => continue,
                    },
                    Op::Finalize => now(store.finalize(&id)).map(drop),
                };
                let ledger = channel.lock().unwrap();
                let after = &ledger.state;
                if result.is_err() {
                    prop_assert_eq!(after, &before);
                }
                let unversioned = |s: &ChannelState| ChannelState { version: 0, ..s.clone() };
                let moved = unversioned(after) != unversioned(&before);
                prop_assert_eq!(after.version, before.version + u64::from(moved));
                prop_assert_eq!(*channel.version.borrow(), after.version);
                prop_assert!(after.accepted <= after.deposit);
                prop_assert!(after.spent.get() + after.reserved.get() <= after.accepted.get());
                prop_assert!(after.spent >= before.spent && after.units >= before.units);
                let rest: u128 = ledger.reservations.values()
                    .map(|h| h.amount.get() - h.committed.get()).sum();
                prop_assert_eq!(after.reserved.get(), rest);
            }
        }
    }
}
