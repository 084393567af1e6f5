-- A product may let its devices connect with `username = did, password = device secret` (over
-- TLS only), for stock firmware that cannot sign a fresh password per connection.
ALTER TABLE products ADD COLUMN static_password BOOLEAN NOT NULL DEFAULT FALSE;
