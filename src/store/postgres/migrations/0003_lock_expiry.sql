-- Locks by expiry (version 3): taking a lock clears a few lapsed ones, which this finds
-- without reading every live lock (spent SIWX nonces are locks that are never unlocked).

CREATE INDEX IF NOT EXISTS tollgate_locks_by_expiry ON tollgate_locks (expires);
