-- Developer accounts and enterprises (issue 4, M8): developers, their token families, TOTP recovery
-- codes, enterprises with members and invitations, and the personal owner of a product.
-- A product's enterprise owner is the existing `products.enterprise_id`; a product with neither
-- owner stays operator-owned.

CREATE TABLE developers (
    developer_id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    suspended INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    failed_count INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    lockouts INTEGER NOT NULL DEFAULT 0,
    totp_secret_enc BLOB,
    totp_enabled INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE developer_recovery_codes (
    developer_id TEXT NOT NULL REFERENCES developers(developer_id),
    code_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (developer_id, code_hash)
);

CREATE TABLE developer_token_families (
    family_id TEXT PRIMARY KEY,
    developer_id TEXT NOT NULL REFERENCES developers(developer_id),
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX developer_token_families_dev ON developer_token_families (developer_id);

CREATE TABLE developer_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    family_id TEXT NOT NULL REFERENCES developer_token_families(family_id),
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX developer_tokens_family ON developer_tokens (family_id);
CREATE INDEX developer_tokens_expiry ON developer_tokens (expires_at);

CREATE TABLE enterprises (
    enterprise_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE enterprise_members (
    enterprise_id TEXT NOT NULL REFERENCES enterprises(enterprise_id),
    developer_id TEXT NOT NULL REFERENCES developers(developer_id),
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (enterprise_id, developer_id)
);
CREATE INDEX enterprise_members_dev ON enterprise_members (developer_id);

CREATE TABLE enterprise_invites (
    invite_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(enterprise_id),
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (enterprise_id, email)
);
CREATE INDEX enterprise_invites_email ON enterprise_invites (email);

ALTER TABLE products ADD COLUMN owner_developer_id TEXT;
CREATE INDEX products_owner_developer ON products (owner_developer_id);
CREATE INDEX products_enterprise ON products (enterprise_id);
