-- OAuth2 clients managed by their owners (issue 4): public (secret-less, PKCE-only) clients and
-- the time of the last change; OpenID Connect login states bound to the browser that started them.

-- 1 for a public client: no secret (`secret_hash` is empty), authenticated by PKCE alone.
ALTER TABLE oauth_clients ADD COLUMN is_public BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE oauth_clients ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX oauth_clients_owner ON oauth_clients (owner, created_at);

-- SHA-256 of the value of the browser-binding cookie set with the state; empty for states made
-- before this migration (refused at the callback; they expire within minutes anyway).
ALTER TABLE oidc_states ADD COLUMN browser_hash TEXT NOT NULL DEFAULT '';
