CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE products (
    product_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_enc BYTEA NOT NULL,
    dynamic_registration BOOLEAN NOT NULL,
    allowlist BOOLEAN NOT NULL,
    report_limit_per_min BIGINT NOT NULL,
    model TEXT NOT NULL,
    enterprise_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE factory_batches (
    batch_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE factory_identities (
    serial TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    batch_id TEXT NOT NULL REFERENCES factory_batches(batch_id),
    secret_enc BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE allowlist (
    product_key TEXT NOT NULL REFERENCES products(product_key),
    hardware_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (product_key, hardware_id)
);

CREATE TABLE devices (
    did TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    hardware_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    secret_enc BYTEA NOT NULL,
    passcode_enc BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    online BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen BIGINT,
    state TEXT NOT NULL DEFAULT '{}',
    UNIQUE (product_key, hardware_id)
);

CREATE TABLE nonces (
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE history (
    did TEXT NOT NULL,
    ts BIGINT NOT NULL,
    point TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX history_lookup ON history (did, point, ts);
CREATE INDEX history_time ON history (did, ts);

CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    source_ip TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
