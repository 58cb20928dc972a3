//! [`PostgresStore`]: a [`ChannelStore`] in PostgreSQL, shared by every instance that
//! connects to the same database and schema.

mod config;
mod error;
mod ledger;
mod listener;
mod migrations;
mod statements;
mod step;
mod sweep;

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use self::error::{backend, corrupt, invalid, not_found};
use self::listener::Listener;
use self::statements::*;
use self::step::{Params, Target, bits, micros};
use super::{
    AskId, ChannelId, ChannelState, ChannelStore, Credited, DEFAULT_LEASE, LockHolder, MAX_USAGE_RECORDS, Reservation,
    StoreError,
};
use crate::amount::Amount;

/// How often a waiter looks at the version itself while the listener is down (or
/// [not used](PostgresStore::without_listener)).
const POLL: Duration = Duration::from_millis(500);

/// How often a waiter looks even while the listener is up: a backstop against a
/// notification lost on a connection that died silently (keepalives notice that within
/// about a minute, and waiters then poll).
const BACKSTOP: Duration = Duration::from_secs(30);

/// A [`ChannelStore`] in PostgreSQL (feature `postgres`).
///
/// Several server instances connected to one database (and schema) share every channel:
/// each step is one short transaction that locks the channel's row (`SELECT … FOR UPDATE`),
/// so steps on one channel queue up and never spend a cent twice, while steps on different
/// channels do not wait for each other. Amounts are `numeric(39,0)`, exact for every
/// [`Amount`]. Leases lapse on the database's clock, so instances whose clocks disagree
/// still agree on them; a lapsed lease is reclaimed by the next step on its channel.
///
/// [`changed`](ChannelStore::changed) wakes through `LISTEN`/`NOTIFY`: every version bump
/// notifies in the same transaction, and each store keeps one extra connection listening.
/// While that connection is down (it reconnects by itself), waiters poll every 500 ms.
///
/// Bounded waits: a store holds at most 16 connections; a step waits at most 5 s for a
/// connection, for a new connection to be made, or for any statement (row locks included,
/// through `statement_timeout`). An unreachable or stuck server therefore fails closed with
/// [`StoreErrorKind::Backend`](super::StoreErrorKind::Backend) instead of hanging a request.
/// TLS is not built in: reach the server over a trusted network or a local socket.
/// Needs PostgreSQL 11 or newer.
///
/// Channels made with [`create_lapsing`](ChannelStore::create_lapsing) carry their date
/// (compared with the database's clock); each create deletes its own id if it has lapsed
/// and up to 32 other lapsed channels, with their shelves and (by cascade) everything else
/// of theirs, in its transaction.
///
/// Clones share the pool and the listener.
///
/// ```no_run
/// # async fn run() -> Result<(), tollgate::store::StoreError> {
/// use tollgate::store::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://tollgate@db.internal/payments").await?;
/// # drop(store); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: Arc<str>,
    lease: Duration,
    wakeups: Wakeups,
}

/// How `changed` learns of a new version.
#[derive(Clone, Debug)]
enum Wakeups {
    Listening(Arc<Listener>),
    Polling,
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or a `key=value` string) and brings the
    /// store's tables in schema `public` up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        Self::connect_in(url, "public").await
    }

    /// Like [`connect`](Self::connect), with the tables in `schema` (created if missing):
    /// one schema per tenant or per test. `schema` must be a plain lowercase identifier
    /// (`[a-z_][a-z0-9_]*`, at most 40 bytes, not `pg_…`), otherwise the call fails with
    /// [`StoreErrorKind::Invalid`](super::StoreErrorKind::Invalid).
    ///
    /// The migrations run in one transaction under an advisory lock per schema, so
    /// instances starting together do not race, and are skipped when already applied.
    pub async fn connect_in(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        let schema = config::check_schema(schema)?;
        let config = config::connection_config(url, schema)?;
        let pool = config::pool(config.clone())?;
        let mut client = pool.get().await.map_err(backend)?;
        migrations::migrate(&mut client, schema).await?;
        drop(client);
        let listener = Listener::spawn(config, notify_channel(schema));
        Ok(PostgresStore {
            pool,
            schema: Arc::from(schema),
            lease: DEFAULT_LEASE,
            wakeups: Wakeups::Listening(Arc::new(listener)),
        })
    }

    /// Sets how long a reservation lives without renewal (default
    /// [`DEFAULT_LEASE`](super::DEFAULT_LEASE)). Every instance sharing a store should use
    /// the same lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Waits for changes by polling the channel every 500 ms instead of listening for
    /// notifications: for deployments that cannot keep a dedicated listening connection
    /// (a proxy that does not pass `LISTEN` through, a tight connection budget), and how the
    /// tests check the fallback a down listener uses. The store's own steps still notify
    /// the instances that do listen. Applies to this handle and the clones made from it.
    pub fn without_listener(mut self) -> Self {
        self.wakeups = Wakeups::Polling;
        self
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(backend)
    }

    /// Inserts channel `id` unless it exists; its version when it was created.
    async fn insert(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<Option<u64>, StoreError> {
        let (accepted, deposit) = (accepted.to_string(), deposit.to_string());
        let rows = self.query(CREATE_CHANNEL, &[&id.as_str(), &accepted, &deposit]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let version: i64 = row.try_get(0).map_err(backend)?;
        u64::try_from(version).map(Some).map_err(|_| corrupt("version"))
    }

    /// Runs one statement on its own (its own transaction).
    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(backend)?;
        client.query(&statement, params).await.map_err(backend)
    }

    /// Runs one statement on its own; how many rows it changed.
    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(backend)?;
        client.execute(&statement, params).await.map_err(backend)
    }

    fn notify_channel(&self) -> String {
        notify_channel(&self.schema)
    }
}

/// The notification channel of the stores in `schema` (a checked identifier).
fn notify_channel(schema: &str) -> String {
    format!("tollgate_changes_{schema}")
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("lease", &self.lease)
            .field("connections", &status.size)
            .field("listening", &matches!(&self.wakeups, Wakeups::Listening(l) if l.waiters().listening()))
            .finish()
    }
}

impl ChannelStore for PostgresStore {
    async fn open(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        if accepted > deposit {
            return Err(invalid());
        }
        // Creates it, or leaves the existing channel as it is; the state is read after.
        self.insert(id, accepted, deposit).await?;
        self.load(id).await?.ok_or_else(not_found)
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
        let client = self.client().await?;
        let statement = client.prepare_cached(PEEK_CHANNEL).await.map_err(backend)?;
        let Some(row) = client.query_opt(&statement, &[&id.as_str()]).await.map_err(backend)? else {
            return Ok(None);
        };
        let lapsed: bool = row.try_get(7).map_err(backend)?;
        if lapsed {
            // A lapsed lease is reclaimed before anyone sees the channel, as by any step.
            drop(client);
            return Ok(Some(self.step(id, Target::Channel, |_| Ok(())).await?.state));
        }
        let asked = step::optional_amount(&row, 8)?.unwrap_or(Amount::ZERO);
        Ok(Some(ChannelState { asked, ..step::channel_state(&row)? }))
    }

    async fn accept(&self, id: &ChannelId, cumulative: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        Ok(self.step(id, Target::Channel, move |ledger| ledger.accept(cumulative, deposit)).await?.state)
    }

    async fn reserve(&self, id: &ChannelId, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        let stepped = self.step(id, Target::Channel, move |ledger| ledger.reserve(min, max)).await?;
        let opened = stepped.opened.ok_or_else(|| corrupt("reservation"))?;
        Ok(Reservation { channel: id.clone(), id: opened, amount: stepped.out })
    }

    async fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: Bytes,
    ) -> Result<Reservation, StoreError> {
        let head = head.to_vec();
        let stepped = self.step(id, Target::Channel, move |ledger| ledger.reserve_recording(min, max, head)).await?;
        let opened = stepped.opened.ok_or_else(|| corrupt("reservation"))?;
        Ok(Reservation { channel: id.clone(), id: opened, amount: stepped.out })
    }

    async fn extend(&self, reservation: &Reservation, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        let target = Target::Reservation(reservation.id);
        let stepped = self.step(&reservation.channel, target, move |ledger| ledger.extend(min, max)).await?;
        Ok(Reservation { amount: stepped.out, ..reservation.clone() })
    }

    async fn commit(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let target = Target::Reservation(reservation.id);
        Ok(self.step(&reservation.channel, target, move |ledger| ledger.commit(used, units)).await?.state)
    }

    async fn release(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        let target = Target::Reservation(reservation.id);
        Ok(self.step(&reservation.channel, target, move |ledger| ledger.release(used, units)).await?.state)
    }

    async fn finalize(&self, id: &ChannelId) -> Result<ChannelState, StoreError> {
        Ok(self.step(id, Target::Channel, move |ledger| ledger.finalize()).await?.state)
    }

    async fn credit(&self, id: &ChannelId, amount: Amount, deposit_ref: &str) -> Result<Credited, StoreError> {
        // A claimed reference is answered without touching the channel it names.
        if let Some(row) = self.query(CREDITED, &[&deposit_ref]).await?.first() {
            let credited = ChannelId::new(row.try_get::<_, &str>(0).map_err(backend)?);
            let state = self.load(&credited).await?.ok_or_else(not_found)?;
            return Ok(Credited { state, fresh: false });
        }
        self.insert(id, Amount::ZERO, Amount::ZERO).await?;
        let claim = Some((deposit_ref.to_owned(), amount));
        let stepped = self
            .step_claiming(id, Target::Channel, claim, move |ledger| {
                if ledger.fresh {
                    ledger.credit(amount)?;
                }
                Ok(ledger.fresh)
            })
            .await?;
        Ok(Credited { state: stepped.state, fresh: stepped.out })
    }

    async fn release_with_usage(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
        record: Bytes,
    ) -> Result<ChannelState, StoreError> {
        let target = Target::Reservation(reservation.id);
        let record = record.to_vec();
        let stepped =
            self.step(&reservation.channel, target, move |ledger| ledger.release_with_usage(used, units, record));
        Ok(stepped.await?.state)
    }

    async fn usage(&self, id: &ChannelId, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        let limit = i64::try_from(limit.min(MAX_USAGE_RECORDS)).unwrap_or(0);
        let rows = self.query(USAGE, &[&id.as_str(), &limit]).await?;
        rows.iter().map(|row| row.try_get::<_, Vec<u8>>(0).map(Bytes::from).map_err(backend)).collect()
    }

    async fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> Result<ChannelState, StoreError> {
        Ok(self.step(id, Target::Channel, move |ledger| ledger.ask(asker, cumulative, ttl)).await?.state)
    }

    async fn withdraw_ask(&self, id: &ChannelId, asker: AskId) -> Result<ChannelState, StoreError> {
        Ok(self.step(id, Target::Channel, move |ledger| ledger.withdraw_ask(asker)).await?.state)
    }

    async fn changed(&self, id: &ChannelId, seen: u64) -> Result<ChannelState, StoreError> {
        let watch = match &self.wakeups {
            Wakeups::Listening(listener) => Some((listener.waiters(), listener.waiters().watch(id.as_str()))),
            Wakeups::Polling => None,
        };
        loop {
            let mut notified = pin!(watch.as_ref().map(|(_, watch)| watch.notified()));
            if let Some(notified) = notified.as_mut().as_pin_mut() {
                // Registered before the version is read: a change from here on wakes it.
                notified.enable();
            }
            let state = self.load(id).await?.ok_or_else(not_found)?;
            if state.version > seen {
                return Ok(state);
            }
            let every = match &watch {
                Some((waiters, _)) if waiters.listening() => BACKSTOP,
                _ => POLL,
            };
            match notified.as_pin_mut() {
                Some(notified) => drop(tokio::time::timeout(every, notified).await),
                None => tokio::time::sleep(every).await,
            }
        }
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    async fn renew(&self, reservation: &Reservation, delivered: Amount, units: u64) -> Result<(), StoreError> {
        let target = Target::Reservation(reservation.id);
        self.step(&reservation.channel, target, move |ledger| ledger.renew(delivered, units)).await.map(drop)
    }

    async fn keep(&self, id: &ChannelId, shelf: &str, key: Amount, value: Bytes) -> Result<(), StoreError> {
        self.execute(KEEP, &[&shelf, &id.as_str(), &key.to_string(), &value.as_ref()]).await.map(drop)
    }

    async fn kept(&self, id: &ChannelId, shelf: &str) -> Result<Vec<(Amount, Bytes)>, StoreError> {
        let rows = self.query(KEPT, &[&shelf, &id.as_str()]).await?;
        rows.iter()
            .map(|row| {
                let value: Vec<u8> = row.try_get(1).map_err(backend)?;
                Ok((step::amount(row, 0)?, Bytes::from(value)))
            })
            .collect()
    }

    async fn discard(&self, id: &ChannelId, shelf: &str, keys: Option<&[Amount]>) -> Result<(), StoreError> {
        match keys {
            None => self.execute(DISCARD_ALL, &[&shelf, &id.as_str()]).await,
            Some(keys) => {
                let keys: Vec<String> = keys.iter().map(Amount::to_string).collect();
                self.execute(DISCARD_KEYS, &[&shelf, &id.as_str(), &keys]).await
            }
        }
        .map(drop)
    }

    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, StoreError> {
        let rows = self.query(SHELVED, &[&shelf]).await?;
        rows.iter().map(|row| row.try_get::<_, &str>(0).map(ChannelId::new).map_err(backend)).collect()
    }

    async fn lock(&self, name: &str, holder: LockHolder, ttl: Duration) -> Result<bool, StoreError> {
        Ok(!self.query(LOCK, &[&name, &bits(holder.0), &micros(ttl)]).await?.is_empty())
    }

    async fn unlock(&self, name: &str, holder: LockHolder) -> Result<(), StoreError> {
        self.execute(UNLOCK, &[&name, &bits(holder.0)]).await.map(drop)
    }
}
