-- Commands sent to devices, so their outcome can be looked up by id: queued (waiting in a parked
-- session), sent (handed to the device's session), ok or error (the device's ack, `detail` its
-- message). A row past `expires_at` without an ack reads as expired; rows are purged a day after
-- they expire.
CREATE TABLE commands (
    did TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    detail TEXT,
    PRIMARY KEY (did, id)
);
CREATE INDEX commands_by_expiry ON commands (expires_at);

-- A device's desired state (a JSON object of data points) and its version, which grows by one at
-- every change. What the device reported is `devices.state`; the delta is computed from both.
CREATE TABLE device_shadows (
    did TEXT PRIMARY KEY,
    desired TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
