-- Factory credentials: a factory line issues identities over the API, signed with a credential of
-- its own (never the product's secret or the server's data directory), up to a device budget and
-- until an expiry; a batch remembers the credential that issued it and can be revoked.
CREATE TABLE factory_credentials (
    credential_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    name TEXT NOT NULL,
    secret_enc BLOB NOT NULL,
    max_devices INTEGER NOT NULL,
    issued INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX factory_credentials_product ON factory_credentials (product_key, created_at);
ALTER TABLE factory_batches ADD COLUMN credential_id TEXT;
ALTER TABLE factory_batches ADD COLUMN revoked_at INTEGER;
ALTER TABLE factory_batches ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;
