-- Lapsing channels (version 5): a claim made with `create_lapsing` may be swept, with its
-- shelves (and through the cascades its reservations, asks, credits and usage), once
-- `lapses_at` has passed on the database's clock. NULL never lapses.

ALTER TABLE tollgate_channels ADD COLUMN IF NOT EXISTS lapses_at timestamptz;

CREATE INDEX IF NOT EXISTS tollgate_channels_by_lapse ON tollgate_channels (lapses_at)
    WHERE lapses_at IS NOT NULL;

-- A sweep deletes by channel: these find the rows without reading the whole table.
CREATE INDEX IF NOT EXISTS tollgate_shelves_by_channel ON tollgate_shelves (channel);
CREATE INDEX IF NOT EXISTS tollgate_credits_by_channel ON tollgate_credits (channel);
