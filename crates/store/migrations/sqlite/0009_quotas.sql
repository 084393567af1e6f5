-- Window quotas that survive a restart (issue 6, M13): one row per counter and fixed window.
--
-- `counter` names the limit and its subject (subjects that are addresses or IPs are hashed by the
-- core before they get here); `window_start` is the window's first millisecond (Unix time, aligned
-- to the window length) and `window_ms` its length. The core keeps the live counts in memory and
-- writes the changed ones about once a second and at shutdown; rows whose window has ended are
-- deleted on the next write.
CREATE TABLE quota_counters (
    counter TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_ms BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (counter, window_start)
);
CREATE INDEX quota_counters_end ON quota_counters (window_start, window_ms);
