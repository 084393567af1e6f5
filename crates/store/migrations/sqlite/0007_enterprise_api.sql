-- Enterprise API access (issue 5, M9) and the audit hash chain (M16/M17).
--
-- Access keys belong to an enterprise; the secret is sealed by the master key (the server computes
-- HMACs with it). A rotation keeps the previous secret until `prev_valid_until`. The products a key
-- may reach are rows of `access_key_products`, so device queries join them with bound parameters.
CREATE TABLE access_keys (
    key_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(enterprise_id),
    secret_enc BLOB NOT NULL,
    prev_secret_enc BLOB,
    prev_valid_until INTEGER,
    scopes TEXT NOT NULL,
    allow_ips TEXT NOT NULL,
    sensitive_points TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX access_keys_enterprise ON access_keys (enterprise_id);

CREATE TABLE access_key_products (
    key_id TEXT NOT NULL REFERENCES access_keys(key_id),
    product_key TEXT NOT NULL REFERENCES products(product_key),
    PRIMARY KEY (key_id, product_key)
);

-- The audit chain: each entry written from now on stores the hash of the entry before it and its
-- own hash. Entries written before this migration keep NULL hashes (the chain starts after them).
-- `audit_chain` is the chain's head, one row, updated in the transaction of every append: the
-- update serialises appends and lets verification notice entries removed from the end.
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE INDEX audit_tenant ON audit (tenant, id);

CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY,
    entries INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, entries, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
