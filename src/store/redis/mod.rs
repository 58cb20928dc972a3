//! [`RedisStore`]: a [`ChannelStore`] that several server instances share through Redis.

mod amounts;
mod error;
mod keys;
mod reply;
mod scripts;
mod wakeups;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, ScriptInvocation};
use tokio::time::{sleep, timeout};

use self::amounts::{MAX_AMOUNT, bound, bound_count, exact, exact_count};
use self::error::{backend, timed_out, unexpected};
use self::keys::{ChannelKeys, Keys, TOPIC};
use self::reply::{Reply, parse};
use self::scripts::SCRIPTS;
use self::wakeups::{Listener, Wakeups};
use super::{
    AskId, ChannelId, ChannelState, ChannelStore, Credited, DEFAULT_LEASE, LockHolder, MAX_USAGE_RECORDS, Reservation,
    ReservationId, StoreError, StoreErrorKind,
};
use crate::amount::Amount;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to answer one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most any one step may take, reconnection included: past it the step fails closed.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiter re-reads its channel while pub/sub is down.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often a waiter re-reads its channel while pub/sub is up, in case a message was lost
/// on a connection that has not noticed its loss yet.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// How many lapsed channels one create sweeps besides its own id.
const SWEEP_BATCH: usize = 32;

/// A [`ChannelStore`] on a Redis server (7.0 or later), shared by every instance pointed at
/// it: the way to run several instances behind a load balancer.
///
/// Every step is one server-side Lua script (run by hash, `EVALSHA`), so it is atomic
/// without `WATCH` or retries, and a step on one channel reads and writes only that
/// channel's keys. Each step first reclaims the channel's lapsed [leases](super#leases),
/// exactly as [`MemoryStore`](super::MemoryStore) does. Lease and ask expiry use the Redis
/// server's clock (`TIME` inside the script), so instances with skewed clocks agree on when
/// a lease lapses.
///
/// # Amounts
///
/// Lua numbers are doubles, so the store keeps amounts (and unit counts) only up to
/// [`MAX_AMOUNT`](Self::MAX_AMOUNT) = 2⁵³ − 1 base units (nine billion dollars of a six-decimal token): an
/// `accepted`, `deposit`, ask or unit count above it is [`StoreErrorKind::Invalid`] and
/// changes nothing. Bounds above it (a reservation's `max`, a commit's `used`) are fine,
/// as they are only compared with what the store keeps. Shelf keys are exact for any
/// amount (they are kept as decimal text).
///
/// # Keys and Redis Cluster
///
/// Keys start with a prefix (`tollgate` unless [`with_prefix`](Self::with_prefix) says
/// otherwise), and all keys of one channel share the channel's hash tag `{<id>}`, so every
/// ledger step touches a single slot. Two kinds of keys live in their own slots: a lock's,
/// and a shelf's index of channels (what [`shelved`](ChannelStore::shelved) reads without
/// scanning the keyspace). [`keep`](ChannelStore::keep) and
/// [`discard`](ChannelStore::discard) change the channel's shelf in one single-slot script
/// and the index in a command of its own (the index after the value), so those scripts run
/// on Redis Cluster too. The connection itself is a single-server connection manager:
/// behind a sharded cluster, put a cluster-aware proxy in front (or run one primary with
/// failover).
///
/// Channels are kept until deleted by hand, except lapsing ones
/// ([`create_lapsing`](ChannelStore::create_lapsing)): the index `<prefix>:lapses` lists
/// them by date (compared with the server's clock), and each create sweeps the lapsed ones
/// (its own id and up to 32 others) with every key of theirs, their shelves and their
/// shelf listings, in its one script. That script names other channels' keys, so `create`
/// and `create_lapsing` need one Redis primary, not a sharded cluster.
///
/// # Failing closed
///
/// A store that cannot reach its server answers [`StoreErrorKind::Backend`] within a
/// bounded time (a few seconds), never hangs. The connection is multiplexed and reconnects
/// on its own; a step that fails on a lost connection may or may not have happened, as the
/// trait allows.
///
/// # Wake-ups
///
/// Every version bump is published on the `tollgate:changed` pub/sub channel (one for the
/// whole server, whatever the prefix), and [`changed`](ChannelStore::changed) listens on a
/// dedicated pub/sub connection, checking the version after it has subscribed so nothing
/// is missed. When pub/sub is down, waiters poll the channel every half second instead.
///
/// Clones share the connections and the listener. Reservation ids are unique per channel.
///
/// ```no_run
/// # async fn run() -> Result<(), tollgate::store::StoreError> {
/// use tollgate::store::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("billing");
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    wakeups: Arc<Wakeups>,
    /// Keeps the pub/sub listener running while any clone lives.
    listener: Option<Arc<Listener>>,
    keys: Keys,
    lease: Duration,
}

impl RedisStore {
    /// The largest amount (and unit count) this store keeps: 2⁵³ − 1, the largest integer
    /// a Lua number holds exactly. See [Amounts](Self#amounts).
    pub const MAX_AMOUNT: Amount = MAX_AMOUNT;

    /// Connects to the server at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS where the `redis` crate is built with it), and starts listening
    /// for wake-ups. Fails with [`StoreErrorKind::Backend`] if the server does not answer
    /// in time.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with(url, true).await
    }

    /// [`connect`](Self::connect) without the pub/sub listener: waiters only poll. For
    /// tests of the polling fallback; not part of the stable API.
    #[doc(hidden)]
    pub async fn connect_polling_only(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with(url, false).await
    }

    async fn connect_with(url: &str, wakeups: bool) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connecting = ConnectionManager::new_with_config(client.clone(), config);
        let connection =
            timeout(STEP_TIMEOUT, connecting).await.map_err(|_| timed_out(STEP_TIMEOUT))?.map_err(backend)?;
        let (wakeups, listener) = match wakeups {
            true => {
                let (wakeups, listener) = Wakeups::start(client, CONNECT_TIMEOUT);
                // Give the subscription its first chance, so wake-ups work from the start;
                // if it is slow, waiters poll until it is up.
                let mut live = wakeups.live();
                let _ = timeout(CONNECT_TIMEOUT, live.wait_for(|live| *live)).await;
                (wakeups, Some(Arc::new(listener)))
            }
            false => (Wakeups::disabled(), None),
        };
        Ok(RedisStore { connection, wakeups, listener, keys: Keys::new("tollgate"), lease: DEFAULT_LEASE })
    }

    /// Puts this handle's keys under `prefix` (default `tollgate`), so several
    /// applications (or test runs) can share one server without seeing each other.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.keys = Keys::new(prefix);
        self
    }

    /// Sets how long a reservation taken or renewed through this handle lives without
    /// renewal (default [`DEFAULT_LEASE`]). Instances sharing a store should agree on it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Reserves, with the usage record `head` a reclaim completes, if any (see
    /// [`ChannelStore::reserve_recording`]).
    async fn reserve_with(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Option<&str>,
    ) -> Result<Reservation, StoreError> {
        let bounds = [bound(min), bound(max)];
        let mut args = vec![bounds[0].as_str(), &bounds[1], inverted(min, max)];
        args.extend(head);
        let reply = self.step_existing(&SCRIPTS.reserve, id, &args).await?;
        let (rid, amount) = match &reply.extra[..] {
            [rid, amount] => (reply::number(Some(rid))?, reply::amount(Some(amount))?),
            _ => return Err(unexpected(&reply.extra)),
        };
        Ok(Reservation { channel: id.clone(), id: ReservationId(rid), amount })
    }

    /// Creates `id` unless it exists, lapsing at `lapses_at` if given, after sweeping lapsed
    /// channels (`id` among them): one script.
    async fn claim(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: Option<SystemTime>,
    ) -> Result<ChannelState, StoreError> {
        let (accepted, deposit) = validated(accepted, deposit)?;
        let lapse = lapses_at.map(unix_millis).unwrap_or_default();
        let ChannelKeys { state, held, asks, heads, usage } = self.keys.channel(id);
        let mut invocation = SCRIPTS.create.prepare_invoke();
        invocation.key(&state).key(held).key(asks).key(heads).key(usage);
        invocation.key(self.keys.credits(id)).key(self.keys.shelves(id)).key(self.keys.lapses());
        invocation.arg(&state).arg(TOPIC).arg(millis(self.lease));
        invocation.arg(accepted).arg(deposit).arg(lapse).arg(self.keys.escaped_prefix()).arg(id.as_str());
        invocation.arg(SWEEP_BATCH);
        let reply = parse(self.run(&invocation).await?)?;
        Ok(reply.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))?.state)
    }

    /// Runs `invocation`, failing closed after [`STEP_TIMEOUT`].
    async fn run<T: redis::FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match timeout(STEP_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(answer) => answer.map_err(backend),
            Err(_) => Err(timed_out(STEP_TIMEOUT)),
        }
    }

    /// Runs the ledger step `script` on channel `id` with the step's own `args`.
    async fn step(&self, script: &Script, id: &ChannelId, args: &[&str]) -> Result<Option<Reply>, StoreError> {
        self.step_with(script, id, None, args).await
    }

    /// [`step`](Self::step) with a sixth key of the channel's (its credits).
    async fn step_with(
        &self,
        script: &Script,
        id: &ChannelId,
        extra: Option<String>,
        args: &[&str],
    ) -> Result<Option<Reply>, StoreError> {
        let ChannelKeys { state, held, asks, heads, usage } = self.keys.channel(id);
        let mut invocation = script.prepare_invoke();
        // Every step may reclaim, and a reclaim may complete a usage record.
        invocation.key(&state).key(held).key(asks).key(heads).key(usage);
        if let Some(extra) = extra {
            invocation.key(extra);
        }
        invocation.arg(&state).arg(TOPIC).arg(millis(self.lease));
        for arg in args {
            invocation.arg(*arg);
        }
        parse(self.run(&invocation).await?)
    }

    async fn step_existing(&self, script: &Script, id: &ChannelId, args: &[&str]) -> Result<Reply, StoreError> {
        self.step(script, id, args).await?.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))
    }

    async fn reservation_step(
        &self,
        script: &Script,
        reservation: &Reservation,
        args: &[&str],
    ) -> Result<Reply, StoreError> {
        let id = reservation.id.0.to_string();
        let args: Vec<&str> = [id.as_str()].into_iter().chain(args.iter().copied()).collect();
        self.step_existing(script, &reservation.channel, &args).await
    }

    /// An invocation of `script` on `id`'s `shelf` and the shelf's index.
    /// A shelf step touches the channel's shelf only (one slot, so it runs on Redis
    /// Cluster); the shelf's index of channels is kept apart by [`index`](Self::index).
    fn shelf_step<'s>(&self, script: &'s Script, id: &ChannelId, shelf: &str) -> ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.shelf(id, shelf));
        invocation
    }

    /// Adds `id` to (or removes it from) `shelf`'s index of channels.
    async fn index(&self, shelf: &str, id: &ChannelId, listed: bool) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let key = self.keys.shelved(shelf);
        let call = async {
            match listed {
                true => connection.sadd::<_, _, i64>(key, id.as_str()).await,
                false => connection.srem::<_, _, i64>(key, id.as_str()).await,
            }
        };
        timeout(STEP_TIMEOUT, call).await.map_err(|_| timed_out(STEP_TIMEOUT))?.map_err(backend).map(drop)
    }
}

/// `at` in unix milliseconds, as the lapse index keeps it: within what a Lua number holds
/// exactly (a later date is as good as never), and 0 for a date before 1970.
fn unix_millis(at: SystemTime) -> String {
    let millis = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    millis.min(MAX_AMOUNT.get()).to_string()
}

/// `duration` in whole milliseconds, at least one (a zero would mean "no expiry" to `SET`).
fn millis(duration: Duration) -> String {
    duration.as_millis().clamp(1, u128::from(u64::MAX)).to_string()
}

/// Whether a reservation's bounds are the wrong way round (`Invalid`, after the
/// `Finalized` check the script does first).
fn inverted(min: Amount, max: Amount) -> &'static str {
    if min > max { "1" } else { "0" }
}

fn validated(accepted: Amount, deposit: Amount) -> Result<(String, String), StoreError> {
    if accepted > deposit {
        return Err(StoreError::new(StoreErrorKind::Invalid));
    }
    Ok((exact(accepted)?, exact(deposit)?))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("lease", &self.lease)
            .field("wakeups", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl ChannelStore for RedisStore {
    async fn open(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        let (accepted, deposit) = validated(accepted, deposit)?;
        Ok(self.step_existing(&SCRIPTS.open, id, &[&accepted, &deposit]).await?.state)
    }

    async fn create(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        self.claim(id, accepted, deposit, None).await
    }

    async fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: SystemTime,
    ) -> Result<ChannelState, StoreError> {
        self.claim(id, accepted, deposit, Some(lapses_at)).await
    }

    async fn load(&self, id: &ChannelId) -> Result<Option<ChannelState>, StoreError> {
        Ok(self.step(&SCRIPTS.load, id, &[]).await?.map(|reply| reply.state))
    }

    async fn accept(&self, id: &ChannelId, cumulative: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        let (cumulative, deposit) = (exact(cumulative)?, exact(deposit)?);
        Ok(self.step_existing(&SCRIPTS.accept, id, &[&cumulative, &deposit]).await?.state)
    }

    async fn reserve(&self, id: &ChannelId, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        self.reserve_with(id, min, max, None).await
    }

    async fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Bytes,
    ) -> Result<Reservation, StoreError> {
        // The head is bytes; a script argument is a binary-safe string.
        let head = String::from_utf8(head.to_vec()).map_err(|_| StoreError::new(StoreErrorKind::Invalid))?;
        self.reserve_with(id, min, max, Some(&head)).await
    }

    async fn extend(&self, reservation: &Reservation, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        let args = [bound(min), bound(max)];
        let reply =
            self.reservation_step(&SCRIPTS.extend, reservation, &[&args[0], &args[1], inverted(min, max)]).await?;
        let amount = reply::amount(reply.extra.first())?;
        Ok(Reservation { amount, ..reservation.clone() })
    }

    async fn commit(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let args = [bound(used), bound_count(units)];
        Ok(self.reservation_step(&SCRIPTS.commit, reservation, &[&args[0], &args[1]]).await?.state)
    }

    async fn release(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let args = [bound(used), bound_count(units)];
        Ok(self.reservation_step(&SCRIPTS.release, reservation, &[&args[0], &args[1]]).await?.state)
    }

    async fn finalize(&self, id: &ChannelId) -> Result<ChannelState, StoreError> {
        Ok(self.step_existing(&SCRIPTS.finalize, id, &[]).await?.state)
    }

    async fn credit(&self, id: &ChannelId, amount: Amount, deposit_ref: &str) -> Result<Credited, StoreError> {
        let amount = exact(amount)?;
        let credits = Some(self.keys.credits(id));
        let reply = self.step_with(&SCRIPTS.credit, id, credits, &[deposit_ref, &amount]).await?;
        let reply = reply.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))?;
        let fresh = match reply.extra.first().map(String::as_str) {
            Some("1") => true,
            Some("0") => false,
            _ => return Err(unexpected(&reply.extra)),
        };
        Ok(Credited { state: reply.state, fresh })
    }

    async fn release_with_usage(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
        record: Bytes,
    ) -> Result<ChannelState, StoreError> {
        let (rid, used, units) = (reservation.id.0.to_string(), bound(used), bound_count(units));
        // The record is bytes; a script argument is a binary-safe string.
        let record = String::from_utf8(record.to_vec()).map_err(|_| StoreError::new(StoreErrorKind::Invalid))?;
        let args = [rid.as_str(), &used, &units, &record];
        let reply = self.step(&SCRIPTS.release_with_usage, &reservation.channel, &args).await?;
        Ok(reply.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))?.state)
    }

    async fn usage(&self, id: &ChannelId, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let last = isize::try_from(limit.min(MAX_USAGE_RECORDS)).unwrap_or(isize::MAX) - 1;
        let read = connection.lrange::<_, Vec<Vec<u8>>>(self.keys.usage(id), 0, last);
        let records = timeout(STEP_TIMEOUT, read).await.map_err(|_| timed_out(STEP_TIMEOUT))?.map_err(backend)?;
        Ok(records.into_iter().map(Bytes::from).collect())
    }

    async fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> Result<ChannelState, StoreError> {
        let args = [asker.0.to_string(), exact(cumulative)?, ttl.as_millis().min(u128::from(u32::MAX)).to_string()];
        Ok(self.step_existing(&SCRIPTS.ask, id, &[&args[0], &args[1], &args[2]]).await?.state)
    }

    async fn withdraw_ask(&self, id: &ChannelId, asker: AskId) -> Result<ChannelState, StoreError> {
        Ok(self.step_existing(&SCRIPTS.withdraw_ask, id, &[&asker.0.to_string()]).await?.state)
    }

    async fn changed(&self, id: &ChannelId, seen: u64) -> Result<ChannelState, StoreError> {
        let wakeup = self.listener.as_ref().map(|_| self.wakeups.watch(self.keys.channel(id).state));
        let mut live = self.wakeups.live();
        loop {
            // Listen before looking, so a change between the look and the wait still wakes.
            let mut notified = pin!(wakeup.as_ref().map(|wakeup| wakeup.notify().notified()));
            if let Some(notified) = notified.as_mut().as_pin_mut() {
                notified.enable();
            }
            let state = self.load(id).await?.ok_or_else(|| StoreError::new(StoreErrorKind::NotFound))?;
            if state.version > seen {
                return Ok(state);
            }
            let pause = if wakeup.is_some() && *live.borrow_and_update() { RECHECK_EVERY } else { POLL_EVERY };
            let woken = async {
                match notified.as_mut().as_pin_mut() {
                    Some(notified) => notified.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = woken => {}
                _ = live.changed() => {}
                () = sleep(pause) => {}
            }
        }
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn max_amount(&self) -> Amount {
        MAX_AMOUNT
    }

    async fn renew(&self, reservation: &Reservation, delivered: Amount, units: u64) -> Result<(), StoreError> {
        let args = [bound(delivered), exact_count(units)?];
        self.reservation_step(&SCRIPTS.renew, reservation, &[&args[0], &args[1]]).await.map(drop)
    }

    async fn keep(&self, id: &ChannelId, shelf: &str, key: Amount, value: Bytes) -> Result<(), StoreError> {
        let mut invocation = self.shelf_step(&SCRIPTS.keep, id, shelf);
        invocation.key(self.keys.shelves(id));
        invocation.arg(key.to_string()).arg(value.as_ref()).arg(shelf);
        self.run::<i64>(&invocation).await?;
        // The index is listed by settlement: written after the value, so a listed channel
        // may have an empty shelf (harmless) but a kept value is always listed.
        self.index(shelf, id, true).await
    }

    async fn kept(&self, id: &ChannelId, shelf: &str) -> Result<Vec<(Amount, Bytes)>, StoreError> {
        let mut connection = self.connection.clone();
        let key = self.keys.shelf(id, shelf);
        let fetched = timeout(STEP_TIMEOUT, connection.hgetall::<_, Vec<(String, Vec<u8>)>>(key)).await;
        let entries = fetched.map_err(|_| timed_out(STEP_TIMEOUT))?.map_err(backend)?;
        let mut kept = entries
            .into_iter()
            .map(|(key, value)| Ok((reply::amount(Some(&key))?, Bytes::from(value))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        kept.sort_by_key(|(key, _)| *key);
        Ok(kept)
    }

    async fn discard(&self, id: &ChannelId, shelf: &str, keys: Option<&[Amount]>) -> Result<(), StoreError> {
        let mut invocation = self.shelf_step(&SCRIPTS.discard, id, shelf);
        match keys {
            None => {
                invocation.arg("all");
            }
            Some(keys) => {
                invocation.arg("some");
                for key in keys {
                    invocation.arg(key.to_string());
                }
            }
        }
        match self.run::<i64>(&invocation).await? {
            // A `keep` racing this may re-add the channel between the two calls and lose
            // its listing; only a closed channel's shelf is emptied, so nothing is left to
            // settle on it.
            1 => self.index(shelf, id, false).await,
            _ => Ok(()),
        }
    }

    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, StoreError> {
        let mut connection = self.connection.clone();
        let members = timeout(STEP_TIMEOUT, connection.smembers::<_, Vec<String>>(self.keys.shelved(shelf))).await;
        Ok(members.map_err(|_| timed_out(STEP_TIMEOUT))?.map_err(backend)?.into_iter().map(ChannelId::new).collect())
    }

    async fn lock(&self, name: &str, holder: LockHolder, ttl: Duration) -> Result<bool, StoreError> {
        let mut invocation = SCRIPTS.lock.key(self.keys.lock(name));
        invocation.arg(holder.0.to_string()).arg(millis(ttl));
        Ok(self.run::<i64>(&invocation).await? == 1)
    }

    async fn unlock(&self, name: &str, holder: LockHolder) -> Result<(), StoreError> {
        let mut invocation = SCRIPTS.unlock.key(self.keys.lock(name));
        invocation.arg(holder.0.to_string());
        self.run::<i64>(&invocation).await.map(drop)
    }
}
