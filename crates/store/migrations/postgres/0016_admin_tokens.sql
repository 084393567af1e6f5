-- Named admin tokens beside the bootstrap one (whose hash stays in settings): each is kept as its
-- SHA-256 only, with a hint of its last characters so an operator can tell them apart.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
