-- The operator event stream (issue 5, M25).
--
-- A subscription group is a (product, subkey) pair that some consumer logged in with; `kinds` is
-- the space-separated union of the event kinds its logins asked for, `last_seen` the last time a
-- consumer of it was connected. Every event of a product is queued once per group of that product
-- (`event_queue`) and deleted when a consumer of the group acknowledges it, or when it outlives
-- the retention. Which consumer holds an event is kept in memory only: after a restart every
-- unacknowledged event is delivered again.
CREATE TABLE event_groups (
    product_key TEXT NOT NULL,
    subkey TEXT NOT NULL,
    kinds TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (product_key, subkey)
);

CREATE TABLE event_queue (
    id BIGSERIAL PRIMARY KEY,
    product_key TEXT NOT NULL,
    subkey TEXT NOT NULL,
    did TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_queue_group ON event_queue (product_key, subkey, id);
CREATE INDEX event_queue_created ON event_queue (created_at);
