-- Factory credentials: a factory line issues identities over the API, signed with a credential of
-- its own (never the product's secret or the server's data directory), up to a device budget and
-- until an expiry; a batch remembers the credential that issued it and can be revoked.
CREATE TABLE factory_credentials (
    credential_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    name TEXT NOT NULL,
    secret_enc BYTEA NOT NULL,
    max_devices BIGINT NOT NULL,
    issued BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX factory_credentials_product ON factory_credentials (product_key, created_at);
ALTER TABLE factory_batches ADD COLUMN credential_id TEXT;
ALTER TABLE factory_batches ADD COLUMN revoked_at BIGINT;
ALTER TABLE factory_batches ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;
