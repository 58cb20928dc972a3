//! Where a [`RedisStore`](super::RedisStore) keeps what.
//!
//! All keys of one channel start with `<prefix>:{<channel id>}:`, so they share the channel's
//! hash tag and land in one Redis Cluster slot: every ledger step's script touches one slot.
//! Braces and `%` in the prefix and the id are percent-escaped, so the first `{…}` of a key
//! is always the channel's tag and no two channels' keys can coincide.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{id}:state` | hash | accepted, deposit, spent, reserved, units, finalized, version, next reservation id |
//! | `P:{id}:held` | hash | reservation id → amount, committed, units, delivered, delivered units, lease expiry (server ms) |
//! | `P:{id}:asks` | hash | asker → cumulative, expiry (server ms) |
//! | `P:{id}:heads` | hash | reservation id → the usage record head a reclaim completes |
//! | `P:{id}:credits` | hash | claimed deposit reference → amount credited |
//! | `P:{id}:usage` | list | usage records, newest first (at most `MAX_USAGE_RECORDS`) |
//! | `P:{id}:shelf:<shelf>` | hash | decimal key → value |
//! | `P:{id}:shelves` | set | the names of the shelves the channel has used (what a sweep deletes) |
//! | `P:shelved:<shelf>` | set | ids of the channels with something on `<shelf>` (its own slot) |
//! | `P:lapses` | sorted set | ids of the lapsing channels, by when they lapse (unix ms; its own slot) |
//! | `P:lock:<name>` | string | holder, with a server-side expiry (its own slot) |

use std::borrow::Cow;
use std::sync::Arc;

use crate::store::ChannelId;

/// The pub/sub channel every version bump is announced on, with the channel's state key as
/// the message. One topic for the whole server (pub/sub ignores key prefixes and database
/// numbers), so a store need not know its prefix when it subscribes; a waiter wakes only
/// for its own channel's key.
pub(super) const TOPIC: &str = "tollgate:changed";

/// The key names of one prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: Arc<str>,
    escaped: Arc<str>,
}

/// The keys one ledger step's script reads and writes.
pub(super) struct ChannelKeys {
    pub(super) state: String,
    pub(super) held: String,
    pub(super) asks: String,
    pub(super) heads: String,
    pub(super) usage: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys { prefix: Arc::from(prefix), escaped: Arc::from(escape(prefix)) }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:{id}:`, the start of every key of channel `id`.
    fn tagged(&self, id: &ChannelId) -> String {
        format!("{}:{{{}}}:", self.escaped, escape(id.as_str()))
    }

    pub(super) fn channel(&self, id: &ChannelId) -> ChannelKeys {
        let tagged = self.tagged(id);
        ChannelKeys {
            state: format!("{tagged}state"),
            held: format!("{tagged}held"),
            asks: format!("{tagged}asks"),
            heads: format!("{tagged}heads"),
            usage: self.usage(id),
        }
    }

    /// The channel's claimed deposit references.
    pub(super) fn credits(&self, id: &ChannelId) -> String {
        format!("{}credits", self.tagged(id))
    }

    /// The channel's usage records.
    pub(super) fn usage(&self, id: &ChannelId) -> String {
        format!("{}usage", self.tagged(id))
    }

    pub(super) fn shelf(&self, id: &ChannelId, shelf: &str) -> String {
        format!("{}shelf:{shelf}", self.tagged(id))
    }

    /// The names of the channel's shelves.
    pub(super) fn shelves(&self, id: &ChannelId) -> String {
        format!("{}shelves", self.tagged(id))
    }

    /// The lapsing channels, by when they lapse.
    pub(super) fn lapses(&self) -> String {
        format!("{}:lapses", self.escaped)
    }

    /// The prefix as it starts every key (escaped).
    pub(super) fn escaped_prefix(&self) -> &str {
        &self.escaped
    }

    pub(super) fn shelved(&self, shelf: &str) -> String {
        format!("{}:shelved:{shelf}", self.escaped)
    }

    pub(super) fn lock(&self, name: &str) -> String {
        format!("{}:lock:{name}", self.escaped)
    }
}

/// `s` with `%`, `{` and `}` percent-escaped.
fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '{', '}']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace('%', "%25").replace('{', "%7B").replace('}', "%7D"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_channel_carries_its_tag_first() {
        let keys = Keys::new("app{1}");
        let id = ChannelId::new("a}b{c");
        let channel = keys.channel(&id);
        for key in [channel.state, channel.held, channel.asks, channel.heads, channel.usage, keys.shelf(&id, "x}{y")] {
            assert!(key.starts_with("app%7B1%7D:{a%7Db%7Bc}:"), "{key}");
        }
    }

    #[test]
    fn escaped_ids_never_collide() {
        let keys = Keys::new("p");
        assert_ne!(keys.channel(&ChannelId::new("a%7Db")).state, keys.channel(&ChannelId::new("a}b")).state);
        assert_ne!(keys.shelf(&ChannelId::new("a}:shelf:b"), "c"), keys.shelf(&ChannelId::new("a"), "b}:shelf:c"));
    }
}
