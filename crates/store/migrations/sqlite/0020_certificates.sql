-- Certificate devices: the CAs a product trusts for its devices' client certificates, the newest
-- revocation list of each CA, and the certificate each device last connected with (so its expiry
-- can be shown and a revocation can close its live session).
CREATE TABLE product_cas (
    ca_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    sha256 TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    der BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (product_key, sha256)
);
CREATE TABLE product_crls (
    ca_id TEXT PRIMARY KEY REFERENCES product_cas(ca_id) ON DELETE CASCADE,
    crl_number TEXT NOT NULL,
    der BLOB NOT NULL,
    this_update INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE device_certificates (
    did TEXT PRIMARY KEY REFERENCES devices(did),
    ca_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);
CREATE INDEX device_certificates_ca ON device_certificates (ca_id, serial);
CREATE INDEX product_cas_subject ON product_cas (subject);
