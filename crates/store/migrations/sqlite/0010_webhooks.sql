-- Webhooks for the operator event stream (issue 5, M25).
--
-- A webhook is an HTTPS endpoint of an enterprise that receives the events of some of its
-- products, signed with a secret the server generated (sealed by the master key, like access-key
-- secrets). Its events are queued in `event_queue` under the subscription group
-- (product, '~' || webhook_id), which no stream login can name. An event that every attempt
-- failed to deliver moves to `webhook_dead_letters` until it is redriven (queued again) or deleted.
CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(enterprise_id),
    url TEXT NOT NULL,
    products TEXT NOT NULL,
    kinds TEXT NOT NULL,
    secret_enc BLOB NOT NULL,
    sensitive_points TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_enterprise ON webhooks (enterprise_id);

CREATE TABLE webhook_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks(webhook_id),
    event_id INTEGER NOT NULL,
    product_key TEXT NOT NULL,
    did TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX webhook_dead_letters_hook ON webhook_dead_letters (webhook_id, id);
