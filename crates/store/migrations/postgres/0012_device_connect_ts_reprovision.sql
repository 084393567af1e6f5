-- The timestamp (unix ms) of the last signed CONNECT accepted for the device, 0 before the first:
-- a CONNECT must carry a later one, across restarts as within one process.
ALTER TABLE devices ADD COLUMN connect_ts BIGINT NOT NULL DEFAULT 0;
-- Until when (unix ms) the device's next registration may re-provision it (new secret and
-- passcode, every binding, share and bind token ended); NULL when no window is open.
ALTER TABLE devices ADD COLUMN reprovision_until BIGINT;
