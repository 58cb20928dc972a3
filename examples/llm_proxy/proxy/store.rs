//! Where the proxy keeps its money state: `[store]` in the configuration.
//!
//! `url = "memory"` (the default) keeps it in this process: one instance, and a restart
//! forgets every channel. `redis://…` and `postgres://…` keep it in a server that several
//! instances share, behind one load balancer: a voucher posted to any of them lets a stream
//! on any other go on, and an instance that crashes or restarts finds the accepted vouchers
//! and the channel descriptors where it left them (its holds lapse after `lease` seconds).
//!
//! The payment layer is generic over its store; [`ProxyStore`] picks the backend at run
//! time, so one binary serves any of them.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tollgate::Amount;
use tollgate::store::{AskId, ChannelId, ChannelState, ChannelStore, LockHolder, MemoryStore, Reservation, StoreError};

/// `[store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"memory"`, `"redis://host:6379/0"` or `"postgres://user@host/db"`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Seconds a stream's hold on a channel outlives its instance (renewed while it streams).
    /// Short: a crashed instance's holds come back sooner; the seller then loses at most
    /// what was delivered since the last renewal. Default: the library's (30 s).
    pub lease: Option<u64>,
    /// Redis: the prefix of every key (instances share state only under the same prefix).
    pub prefix: Option<String>,
    /// PostgreSQL: the schema of the tables (created when missing).
    pub schema: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: default_url(), lease: None, prefix: None, schema: None }
    }
}

fn default_url() -> String {
    "memory".into()
}

impl StoreConfig {
    /// Connects to the configured store. An unreachable server, a URL of a backend this
    /// build lacks, or a setting the backend has no use for is an error naming the store.
    pub async fn connect(&self) -> Result<ProxyStore, String> {
        let url = self.url.trim();
        let lease = match self.lease {
            Some(0) => return Err("[store] lease must be at least 1 second".into()),
            Some(secs) => Some(Duration::from_secs(secs)),
            None => None,
        };
        let shown = redacted(url);
        let unused = |setting: &str, backend: &str| Err(format!("[store] {setting} has no meaning for {backend}"));
        match scheme(url) {
            "memory" => {
                if self.prefix.is_some() {
                    return unused("prefix", "the memory store");
                }
                if self.schema.is_some() {
                    return unused("schema", "the memory store");
                }
                let store = match lease {
                    Some(lease) => MemoryStore::new().with_lease(lease),
                    None => MemoryStore::new(),
                };
                Ok(ProxyStore::Memory(store))
            }
            "redis" | "rediss" => {
                if self.schema.is_some() {
                    return unused("schema", "Redis (use prefix)");
                }
                connect_redis(url, self.prefix.as_deref(), lease)
                    .await
                    .map_err(|e| format!("[store] cannot connect to {shown}: {e}"))
            }
            "postgres" | "postgresql" => {
                if self.prefix.is_some() {
                    return unused("prefix", "PostgreSQL (use schema)");
                }
                connect_postgres(url, self.schema.as_deref(), lease)
                    .await
                    .map_err(|e| format!("[store] cannot connect to {shown}: {e}"))
            }
            _ => Err(format!("[store] url {shown}: expected \"memory\", redis://… or postgres://…")),
        }
    }
}

/// The URL's scheme (`memory` has none).
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(scheme, _)| scheme)
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{name}:***@{host}{slash}{path}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str, prefix: Option<&str>, lease: Option<Duration>) -> Result<ProxyStore, String> {
    let mut store = tollgate::store::RedisStore::connect(url).await.map_err(|e| e.to_string())?;
    if let Some(prefix) = prefix {
        store = store.with_prefix(prefix);
    }
    if let Some(lease) = lease {
        store = store.with_lease(lease);
    }
    Ok(ProxyStore::Redis(store))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &str, _: Option<&str>, _: Option<Duration>) -> Result<ProxyStore, String> {
    Err("this build has no Redis support (build with the `redis` feature)".into())
}

#[cfg(feature = "postgres")]
async fn connect_postgres(url: &str, schema: Option<&str>, lease: Option<Duration>) -> Result<ProxyStore, String> {
    use tollgate::store::PostgresStore;
    let store = match schema {
        Some(schema) => PostgresStore::connect_in(url, schema).await,
        None => PostgresStore::connect(url).await,
    };
    let mut store = store.map_err(|e| e.to_string())?;
    if let Some(lease) = lease {
        store = store.with_lease(lease);
    }
    Ok(ProxyStore::Postgres(store))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_: &str, _: Option<&str>, _: Option<Duration>) -> Result<ProxyStore, String> {
    Err("this build has no PostgreSQL support (build with the `postgres` feature)".into())
}

/// The store the proxy runs on, chosen by `[store] url`. Clones share one store.
#[derive(Clone, Debug)]
pub enum ProxyStore {
    /// In this process.
    Memory(MemoryStore),
    /// In Redis, shared by the instances using the same prefix.
    #[cfg(feature = "redis")]
    Redis(tollgate::store::RedisStore),
    /// In PostgreSQL, shared by the instances using the same schema.
    #[cfg(feature = "postgres")]
    Postgres(tollgate::store::PostgresStore),
}

impl Default for ProxyStore {
    /// A fresh in-process store (the demo's, and the tests' unless they name one).
    fn default() -> Self {
        ProxyStore::Memory(MemoryStore::new())
    }
}

impl ProxyStore {
    /// Which backend, for logs: `memory`, `redis` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            ProxyStore::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            ProxyStore::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            ProxyStore::Postgres(_) => "postgres",
        }
    }
}

/// Runs `$call` on whichever store `$self` is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            ProxyStore::Memory($store) => $call.await,
            #[cfg(feature = "redis")]
            ProxyStore::Redis($store) => $call.await,
            #[cfg(feature = "postgres")]
            ProxyStore::Postgres($store) => $call.await,
        }
    };
}

impl ChannelStore for ProxyStore {
    async fn open(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        each!(self, s => s.open(id, accepted, deposit))
    }

    async fn create(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        each!(self, s => s.create(id, accepted, deposit))
    }

    async fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: std::time::SystemTime,
    ) -> Result<ChannelState, StoreError> {
        each!(self, s => s.create_lapsing(id, accepted, deposit, lapses_at))
    }

    async fn load(&self, id: &ChannelId) -> Result<Option<ChannelState>, StoreError> {
        each!(self, s => s.load(id))
    }

    async fn accept(&self, id: &ChannelId, cumulative: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        each!(self, s => s.accept(id, cumulative, deposit))
    }

    async fn reserve(&self, id: &ChannelId, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        each!(self, s => s.reserve(id, min, max))
    }

    async fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: bytes::Bytes,
    ) -> Result<Reservation, StoreError> {
        each!(self, s => s.reserve_recording(id, min, max, head))
    }

    async fn extend(&self, reservation: &Reservation, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        each!(self, s => s.extend(reservation, min, max))
    }

    async fn commit(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        each!(self, s => s.commit(reservation, used, units))
    }

    async fn release(&self, reservation: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        each!(self, s => s.release(reservation, used, units))
    }

    async fn finalize(&self, id: &ChannelId) -> Result<ChannelState, StoreError> {
        each!(self, s => s.finalize(id))
    }

    async fn credit(
        &self,
        id: &ChannelId,
        amount: Amount,
        deposit_ref: &str,
    ) -> Result<tollgate::store::Credited, StoreError> {
        each!(self, s => s.credit(id, amount, deposit_ref))
    }

    async fn release_with_usage(
        &self,
        reservation: &Reservation,
        used: Amount,
        units: u64,
        record: bytes::Bytes,
    ) -> Result<ChannelState, StoreError> {
        each!(self, s => s.release_with_usage(reservation, used, units, record))
    }

    async fn usage(&self, id: &ChannelId, limit: usize) -> Result<Vec<bytes::Bytes>, StoreError> {
        each!(self, s => s.usage(id, limit))
    }

    async fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: Duration,
    ) -> Result<ChannelState, StoreError> {
        each!(self, s => s.ask(id, asker, cumulative, ttl))
    }

    async fn withdraw_ask(&self, id: &ChannelId, asker: AskId) -> Result<ChannelState, StoreError> {
        each!(self, s => s.withdraw_ask(id, asker))
    }

    async fn changed(&self, id: &ChannelId, seen: u64) -> Result<ChannelState, StoreError> {
        each!(self, s => s.changed(id, seen))
    }

    fn lease(&self) -> Duration {
        match self {
            ProxyStore::Memory(s) => s.lease(),
            #[cfg(feature = "redis")]
            ProxyStore::Redis(s) => s.lease(),
            #[cfg(feature = "postgres")]
            ProxyStore::Postgres(s) => s.lease(),
        }
    }

    async fn renew(&self, reservation: &Reservation, delivered: Amount, units: u64) -> Result<(), StoreError> {
        each!(self, s => s.renew(reservation, delivered, units))
    }

    async fn keep(&self, id: &ChannelId, shelf: &str, key: Amount, value: Bytes) -> Result<(), StoreError> {
        each!(self, s => s.keep(id, shelf, key, value))
    }

    async fn kept(&self, id: &ChannelId, shelf: &str) -> Result<Vec<(Amount, Bytes)>, StoreError> {
        each!(self, s => s.kept(id, shelf))
    }

    async fn discard(&self, id: &ChannelId, shelf: &str, keys: Option<&[Amount]>) -> Result<(), StoreError> {
        each!(self, s => s.discard(id, shelf, keys))
    }

    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, StoreError> {
        each!(self, s => s.shelved(shelf))
    }

    async fn lock(&self, name: &str, holder: LockHolder, ttl: Duration) -> Result<bool, StoreError> {
        each!(self, s => s.lock(name, holder, ttl))
    }

    async fn unlock(&self, name: &str, holder: LockHolder) -> Result<(), StoreError> {
        each!(self, s => s.unlock(name, holder))
    }
}
