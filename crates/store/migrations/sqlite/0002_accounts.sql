-- Consumer accounts (issue 4): apps, end users, one-time codes, token families, bindings, shares.

CREATE TABLE apps (
    app_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    product_keys TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    phone TEXT UNIQUE,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    app_id TEXT NOT NULL REFERENCES apps(app_id),
    created_at INTEGER NOT NULL,
    failed_count INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    lockouts INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE user_codes (
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (recipient, purpose)
);

CREATE TABLE token_families (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    app_id TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX token_families_user ON token_families (user_id);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    family_id TEXT NOT NULL REFERENCES token_families(family_id),
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_expiry ON tokens (expires_at);

CREATE TABLE bindings (
    did TEXT NOT NULL REFERENCES devices(did),
    user_id TEXT NOT NULL REFERENCES users(user_id),
    role TEXT NOT NULL,
    share_id TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (did, user_id)
);
CREATE INDEX bindings_user ON bindings (user_id, created_at);
-- At most one owner per device, even when two users bind at the same moment.
CREATE UNIQUE INDEX bindings_one_owner ON bindings (did) WHERE role = 'owner';

CREATE TABLE shares (
    share_id TEXT PRIMARY KEY,
    did TEXT NOT NULL REFERENCES devices(did),
    owner_id TEXT NOT NULL REFERENCES users(user_id),
    invitee_id TEXT NOT NULL REFERENCES users(user_id),
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    accepted_at INTEGER
);
CREATE INDEX shares_invitee ON shares (invitee_id, created_at);
CREATE INDEX shares_did ON shares (did);

CREATE TABLE bind_tokens (
    token_hash TEXT PRIMARY KEY,
    did TEXT NOT NULL REFERENCES devices(did),
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bind_tokens_did ON bind_tokens (did);
