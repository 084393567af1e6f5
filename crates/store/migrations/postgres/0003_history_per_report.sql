-- One history row per report, its points as one JSON object, under a single (did, ts) index (see
-- the SQLite migration of the same number).
CREATE TABLE history_reports (
    did TEXT NOT NULL,
    ts BIGINT NOT NULL,
    vals JSONB NOT NULL
);
INSERT INTO history_reports (did, ts, vals)
    SELECT did, ts, jsonb_object_agg(point, value::jsonb) FROM history GROUP BY did, ts ORDER BY ts;
DROP TABLE history;
ALTER TABLE history_reports RENAME TO history;
CREATE INDEX history_time ON history (did, ts);
