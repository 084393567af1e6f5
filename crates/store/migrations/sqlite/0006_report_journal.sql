-- Reports are committed here first: a rowid table with no other index, so a group commit writes
-- only the pages its rows fill. About once a second the writer moves the journal into `history`
-- (sorted by device, so each device's page of the (did, ts) index is written once per move, not
-- once per commit) and into `devices.state`. PostgreSQL writes history directly and has no journal.
CREATE TABLE report_journal (
    seq INTEGER PRIMARY KEY,
    did TEXT NOT NULL,
    ts INTEGER NOT NULL,
    vals TEXT NOT NULL
);
