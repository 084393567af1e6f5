-- A disabled device is refused at CONNECT and its live session is closed; enabling it again
-- restores it as it was (secret, bindings and history are kept).
ALTER TABLE devices ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
