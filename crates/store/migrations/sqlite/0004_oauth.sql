-- OAuth2 (issue 4, M11): Rampart as an authorisation server for third-party platforms, and
-- login with third-party OpenID Connect providers.

-- A registered third-party client. The secret is stored as SHA-256 only.
CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    -- JSON array of exact redirect URIs.
    redirect_uris TEXT NOT NULL,
    -- Space-separated scopes the client may ask for.
    scopes TEXT NOT NULL,
    -- Who registered it (actor kind:id), for the owner checks to come.
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One user's approval of one client: the family of every code and token issued from it.
CREATE TABLE oauth_grants (
    grant_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    client_id TEXT NOT NULL REFERENCES oauth_clients(client_id),
    scope TEXT NOT NULL,
    -- Set once its code was exchanged for tokens.
    active INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    -- Absolute end of the grant: no token outlives it.
    expires_at INTEGER NOT NULL
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id, created_at);

-- Authorisation codes (SHA-256), single use.
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(grant_id),
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);

-- Access and refresh tokens of grants (SHA-256).
CREATE TABLE oauth_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(grant_id),
    scope TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_expiry ON oauth_tokens (expires_at);

-- A Rampart user signed in through an OpenID Connect provider, keyed by (provider, subject).
CREATE TABLE oidc_links (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    email TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oidc_links_user ON oidc_links (user_id);

-- A login in flight at a provider: its state (SHA-256), nonce and PKCE verifier (sealed).
CREATE TABLE oidc_states (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    app_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    verifier_enc BLOB NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX oidc_states_expiry ON oidc_states (expires_at);
