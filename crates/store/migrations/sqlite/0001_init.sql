CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE products (
    product_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_enc BLOB NOT NULL,
    dynamic_registration INTEGER NOT NULL,
    allowlist INTEGER NOT NULL,
    report_limit_per_min INTEGER NOT NULL,
    model TEXT NOT NULL,
    enterprise_id TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE factory_batches (
    batch_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    count INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE factory_identities (
    serial TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    batch_id TEXT NOT NULL REFERENCES factory_batches(batch_id),
    secret_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE allowlist (
    product_key TEXT NOT NULL REFERENCES products(product_key),
    hardware_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (product_key, hardware_id)
);

CREATE TABLE devices (
    did TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    hardware_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    secret_enc BLOB NOT NULL,
    passcode_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen INTEGER,
    state TEXT NOT NULL DEFAULT '{}',
    UNIQUE (product_key, hardware_id)
);

CREATE TABLE nonces (
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE history (
    did TEXT NOT NULL,
    ts INTEGER NOT NULL,
    point TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX history_lookup ON history (did, point, ts);
CREATE INDEX history_time ON history (did, ts);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    source_ip TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
