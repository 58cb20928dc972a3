//! The shared stores the tests run on: Redis at `REDIS_URL`, PostgreSQL at `DATABASE_URL`
//! (both default to 127.0.0.1), each test under a prefix or schema of its own.

use std::time::Duration;

use crate::proxy::store::{ProxyStore, StoreConfig};

/// A store server several proxy instances share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Redis (`[store] prefix` keeps tests apart).
    Redis,
    /// PostgreSQL (`[store] schema` keeps tests apart).
    Postgres,
}

impl Backend {
    /// The server's URL.
    pub fn url(self) -> String {
        match self {
            Backend::Redis => std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            Backend::Postgres => {
                std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
            }
        }
    }

    /// The `[store]` of a test named `test` on this backend reached at `url`, with `lease`
    /// seconds: a prefix or schema unique to this run of this test.
    pub fn config(self, url: &str, test: &str, lease: Option<u64>) -> StoreConfig {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let tag = format!("tg_proxy_{test}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        let mut config = StoreConfig { url: url.to_owned(), lease, ..StoreConfig::default() };
        match self {
            Backend::Redis => config.prefix = Some(format!("{tag}:")),
            Backend::Postgres => config.schema = Some(tag),
        }
        config
    }

    /// The server's `host:port`.
    pub fn addr(self) -> String {
        authority(&self.url()).1
    }

    /// Whether the server answers. Unreachable under `CI=true` fails the test; otherwise the
    /// test skips, saying so.
    pub async fn reachable(self) -> bool {
        let addr = self.addr();
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await,
            Ok(Ok(_))
        );
        if !up {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{self:?} at {addr} is unreachable (CI=true)");
            eprintln!("SKIPPED: {self:?} at {addr} is unreachable");
        }
        up
    }
}

/// Connects `config`, or fails the test naming the store.
pub async fn connect(config: &StoreConfig) -> ProxyStore {
    config.connect().await.unwrap_or_else(|e| panic!("store {}: {e}", config.url))
}

/// `url` (`scheme://[userinfo@]host:port[/path]`) with its `host:port` replaced by `addr`.
pub fn through(url: &str, addr: &str) -> String {
    let (prefix, _, rest) = authority(url);
    format!("{prefix}{addr}{rest}")
}

/// `url` split into what comes before `host:port`, `host:port` (default port filled in)
/// and what comes after.
fn authority(url: &str) -> (String, String, String) {
    let (scheme, after) = url.split_once("://").unwrap_or(("", url));
    let (auth, path) = match after.find(['/', '?']) {
        Some(at) => after.split_at(at),
        None => (after, ""),
    };
    let (user, host) = match auth.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), auth),
    };
    let port = if scheme.starts_with("redis") { 6379 } else { 5432 };
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:{port}") };
    (format!("{scheme}://{user}"), host, path.to_owned())
}

#[test]
fn urls_are_rerouted_keeping_user_and_path() {
    assert_eq!(
        through("postgres://postgres@127.0.0.1:5432/test", "127.0.0.1:9"),
        "postgres://postgres@127.0.0.1:9/test"
    );
    assert_eq!(through("redis://127.0.0.1:6379", "127.0.0.1:9"), "redis://127.0.0.1:9");
    assert_eq!(through("redis://localhost/2", "127.0.0.1:9"), "redis://127.0.0.1:9/2");
    assert_eq!(authority("postgres://u:p@db/x").1, "db:5432");
}
