//! The SQL of every step. Tables are found through the connection's `search_path` (the
//! store's schema). Amounts travel as decimal text both ways (`$n::text::numeric`,
//! `col::text`), so every u128 is exact without a decimal type on the Rust side. Lease and
//! ask times are on the database's clock.

/// The channel's figures, its row locked for the rest of the transaction: steps on one
/// channel queue up here, steps on others do not wait.
pub(super) const LOCK_CHANNEL: &str = "SELECT accepted::text, deposit::text, spent::text, reserved::text, units::text, \
     finalized, version FROM tollgate_channels WHERE id = $1 FOR UPDATE";

/// The channel's figures without a lock, whether a lease has lapsed (then the caller takes
/// the locked path to reclaim it), and the highest live ask.
pub(super) const PEEK_CHANNEL: &str = "SELECT c.accepted::text, c.deposit::text, c.spent::text, c.reserved::text, \
     c.units::text, c.finalized, c.version, \
     EXISTS (SELECT 1 FROM tollgate_reservations r WHERE r.channel = c.id AND r.expires <= clock_timestamp()), \
     (SELECT max(a.cumulative)::text FROM tollgate_asks a WHERE a.channel = c.id AND a.expires > clock_timestamp()) \
     FROM tollgate_channels c WHERE c.id = $1";

/// The channel's leases that have lapsed, with the usage record head a reclaim completes.
pub(super) const LAPSED: &str = "SELECT id, amount::text, committed::text, units::text, delivered::text, \
     delivered_units::text, usage_head FROM tollgate_reservations \
     WHERE channel = $1 AND expires <= clock_timestamp() ORDER BY id";

/// One reservation of the channel.
pub(super) const HELD: &str = "SELECT id, amount::text, committed::text, units::text, delivered::text, \
     delivered_units::text FROM tollgate_reservations WHERE channel = $1 AND id = $2";

pub(super) const CREATE_CHANNEL: &str = "INSERT INTO tollgate_channels (id, accepted, deposit) \
     VALUES ($1, $2::text::numeric, $3::text::numeric) ON CONFLICT (id) DO NOTHING RETURNING version";

/// Creates a channel unless it exists, lapsing at `$4` (unix microseconds; NULL: never).
pub(super) const CREATE_LAPSING: &str = "INSERT INTO tollgate_channels (id, accepted, deposit, lapses_at) \
     VALUES ($1, $2::text::numeric, $3::text::numeric, 'epoch'::timestamptz + $4::bigint * interval '1 microsecond') \
     ON CONFLICT (id) DO NOTHING RETURNING version";

/// Deletes channel `$1` with its shelves if it has lapsed (the other tables cascade).
pub(super) const SWEEP_OWN: &str = "WITH gone AS (DELETE FROM tollgate_channels \
     WHERE id = $1 AND lapses_at <= clock_timestamp() RETURNING id) \
     DELETE FROM tollgate_shelves WHERE channel IN (SELECT id FROM gone)";

/// Deletes up to `$1` lapsed channels, longest lapsed first, with their shelves; rows
/// another transaction holds are left for a later sweep.
pub(super) const SWEEP_LAPSED: &str = "WITH due AS (SELECT id FROM tollgate_channels \
     WHERE lapses_at <= clock_timestamp() ORDER BY lapses_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
     gone AS (DELETE FROM tollgate_channels WHERE id IN (SELECT id FROM due) RETURNING id) \
     DELETE FROM tollgate_shelves WHERE channel IN (SELECT id FROM gone)";

pub(super) const WRITE_CHANNEL: &str = "UPDATE tollgate_channels SET accepted = $2::text::numeric, \
     deposit = $3::text::numeric, spent = $4::text::numeric, reserved = $5::text::numeric, \
     units = $6::text::numeric, finalized = $7, version = $8 WHERE id = $1";

/// Wakes the `changed` waiters of every instance once the transaction commits. The payload
/// is the channel id, or empty (wake every waiter) for an id too long for a notification.
pub(super) const NOTIFY: &str =
    "SELECT pg_notify($1, CASE WHEN octet_length($2::text) <= 4000 THEN $2::text ELSE '' END)";

pub(super) const DROP_RESERVATIONS: &str = "DELETE FROM tollgate_reservations WHERE id = ANY($1)";

/// `$3`: the lease in microseconds; `$4`: the usage record head, or NULL.
pub(super) const OPEN_RESERVATION: &str = "INSERT INTO tollgate_reservations (channel, amount, expires, usage_head) \
     VALUES ($1, $2::text::numeric, clock_timestamp() + $3::bigint * interval '1 microsecond', $4) RETURNING id";

pub(super) const WRITE_RESERVATION: &str = "UPDATE tollgate_reservations SET amount = $2::text::numeric, \
     committed = $3::text::numeric, units = $4::text::numeric, delivered = $5::text::numeric, \
     delivered_units = $6::text::numeric, expires = clock_timestamp() + $7::bigint * interval '1 microsecond' \
     WHERE id = $1";

pub(super) const DROP_LAPSED_ASKS: &str =
    "DELETE FROM tollgate_asks WHERE channel = $1 AND expires <= clock_timestamp()";

/// `$4`: the ask's time to live in microseconds.
pub(super) const PUT_ASK: &str = "INSERT INTO tollgate_asks (channel, asker, cumulative, expires) \
     VALUES ($1, $2, $3::text::numeric, clock_timestamp() + $4::bigint * interval '1 microsecond') \
     ON CONFLICT (channel, asker) DO UPDATE SET cumulative = EXCLUDED.cumulative, expires = EXCLUDED.expires";

/// Keeps the newest asks of the channel (by expiry) besides `$2`'s, so with it there are at
/// most `$3 + 1`.
pub(super) const TRIM_ASKS: &str = "DELETE FROM tollgate_asks WHERE channel = $1 AND asker IN \
     (SELECT asker FROM tollgate_asks WHERE channel = $1 AND asker <> $2 ORDER BY expires DESC, asker OFFSET $3)";

pub(super) const WITHDRAW_ASK: &str = "DELETE FROM tollgate_asks WHERE channel = $1 AND asker = $2";

pub(super) const ASKED: &str = "SELECT max(cumulative)::text FROM tollgate_asks \
     WHERE channel = $1 AND expires > clock_timestamp()";

pub(super) const KEEP: &str = "INSERT INTO tollgate_shelves (shelf, channel, key, value) \
     VALUES ($1, $2, $3::text::numeric, $4) ON CONFLICT (shelf, channel, key) DO UPDATE SET value = EXCLUDED.value";

pub(super) const KEPT: &str =
    "SELECT key::text, value FROM tollgate_shelves WHERE shelf = $1 AND channel = $2 ORDER BY tollgate_shelves.key";

pub(super) const DISCARD_ALL: &str = "DELETE FROM tollgate_shelves WHERE shelf = $1 AND channel = $2";

pub(super) const DISCARD_KEYS: &str =
    "DELETE FROM tollgate_shelves WHERE shelf = $1 AND channel = $2 AND key = ANY($3::text[]::numeric[])";

pub(super) const SHELVED: &str = "SELECT DISTINCT channel FROM tollgate_shelves WHERE shelf = $1";

/// Takes the job if it is free, lapsed or already `$2`'s, in one statement; a row comes
/// back only when `$2` holds it. `$3`: the time to live in microseconds. It also clears a
/// few lapsed locks of other names (a lapsed lock is free, and locks that are never
/// unlocked, like spent SIWX nonces, would otherwise pile up), skipping rows another
/// statement holds so that no two takers wait on each other.
pub(super) const LOCK: &str = "WITH lapsed AS (DELETE FROM tollgate_locks WHERE name IN \
     (SELECT name FROM tollgate_locks WHERE expires <= clock_timestamp() AND name <> $1 \
     LIMIT 16 FOR UPDATE SKIP LOCKED)) \
     INSERT INTO tollgate_locks (name, holder, expires) \
     VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 microsecond') \
     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires \
     WHERE tollgate_locks.holder = EXCLUDED.holder OR tollgate_locks.expires <= clock_timestamp() \
     RETURNING holder";

pub(super) const UNLOCK: &str = "DELETE FROM tollgate_locks WHERE name = $1 AND holder = $2";

/// Claims a deposit reference; a row comes back only for the claim that made it.
pub(super) const CLAIM_CREDIT: &str = "INSERT INTO tollgate_credits (ref, channel, amount) \
     VALUES ($1, $2, $3::text::numeric) ON CONFLICT (ref) DO NOTHING RETURNING ref";

/// The channel a claimed reference credited.
pub(super) const CREDITED: &str = "SELECT channel FROM tollgate_credits WHERE ref = $1";

pub(super) const APPEND_USAGE: &str = "INSERT INTO tollgate_usage (channel, record) VALUES ($1, $2)";

/// Keeps the channel's newest `$2` usage records.
pub(super) const TRIM_USAGE: &str = "DELETE FROM tollgate_usage WHERE channel = $1 AND id <= \
     (SELECT id FROM tollgate_usage WHERE channel = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)";

pub(super) const USAGE: &str = "SELECT record FROM tollgate_usage WHERE channel = $1 ORDER BY id DESC LIMIT $2";
