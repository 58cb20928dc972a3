-- Reclaimed prepaid reservations (version 4): the head of the usage record a reclaim
-- completes and appends, for reservations taken with `reserve_recording` (NULL otherwise).

ALTER TABLE tollgate_reservations ADD COLUMN IF NOT EXISTS usage_head bytea;
