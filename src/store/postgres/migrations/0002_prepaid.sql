-- Prepaid balances (version 2): claimed deposit references and usage records.

CREATE TABLE IF NOT EXISTS tollgate_credits (
    -- The deposit reference (an on-chain transaction hash): claimed once, store-wide.
    ref text PRIMARY KEY,
    channel text NOT NULL REFERENCES tollgate_channels (id) ON DELETE CASCADE,
    amount numeric(39, 0) NOT NULL CHECK (0 <= amount),
    at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tollgate_usage (
    id bigserial PRIMARY KEY,
    channel text NOT NULL REFERENCES tollgate_channels (id) ON DELETE CASCADE,
    record bytea NOT NULL
);

CREATE INDEX IF NOT EXISTS tollgate_usage_by_channel ON tollgate_usage (channel, id DESC);
