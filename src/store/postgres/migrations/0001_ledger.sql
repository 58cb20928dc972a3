-- Channel accounting, leases, asks, shelves and locks of `PostgresStore` (version 1).
-- Amounts are numeric(39,0), exact for every u128; unit counts numeric(20,0), exact for every
-- u64. The checks restate the store's invariants, so a bug fails a step instead of
-- corrupting the books.

CREATE TABLE IF NOT EXISTS tollgate_channels (
    id text PRIMARY KEY,
    accepted numeric(39, 0) NOT NULL,
    deposit numeric(39, 0) NOT NULL,
    spent numeric(39, 0) NOT NULL DEFAULT 0,
    reserved numeric(39, 0) NOT NULL DEFAULT 0,
    units numeric(20, 0) NOT NULL DEFAULT 0,
    finalized boolean NOT NULL DEFAULT false,
    version bigint NOT NULL DEFAULT 1,
    CHECK (0 <= accepted AND accepted <= deposit AND deposit <= 340282366920938463463374607431768211455),
    CHECK (0 <= spent AND 0 <= reserved AND spent + reserved <= accepted),
    CHECK (0 <= units AND units <= 18446744073709551615)
);

CREATE SEQUENCE IF NOT EXISTS tollgate_reservation_ids AS bigint MINVALUE 1;

CREATE TABLE IF NOT EXISTS tollgate_reservations (
    id bigint PRIMARY KEY DEFAULT nextval('tollgate_reservation_ids'),
    channel text NOT NULL REFERENCES tollgate_channels (id) ON DELETE CASCADE,
    amount numeric(39, 0) NOT NULL,
    committed numeric(39, 0) NOT NULL DEFAULT 0,
    units numeric(20, 0) NOT NULL DEFAULT 0,
    -- The last renewal's provisional figures: they count only if the lease lapses.
    delivered numeric(39, 0) NOT NULL DEFAULT 0,
    delivered_units numeric(20, 0) NOT NULL DEFAULT 0,
    -- On the database's clock, so instances with skewed clocks agree.
    expires timestamptz NOT NULL,
    CHECK (0 <= committed AND committed <= amount AND 0 <= delivered AND delivered <= amount)
);

CREATE INDEX IF NOT EXISTS tollgate_reservations_by_expiry ON tollgate_reservations (channel, expires);

CREATE TABLE IF NOT EXISTS tollgate_asks (
    channel text NOT NULL REFERENCES tollgate_channels (id) ON DELETE CASCADE,
    asker bigint NOT NULL,
    cumulative numeric(39, 0) NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (channel, asker)
);

CREATE TABLE IF NOT EXISTS tollgate_shelves (
    shelf text NOT NULL,
    channel text NOT NULL,
    key numeric(39, 0) NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (shelf, channel, key)
);

CREATE TABLE IF NOT EXISTS tollgate_locks (
    name text PRIMARY KEY,
    holder bigint NOT NULL,
    expires timestamptz NOT NULL
);
