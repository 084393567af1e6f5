-- More ways for a product's devices to prove who they are: client certificates chained to the
-- product's CAs (`x509`, with just-in-time registration `x509_jit`, and RSA-1024 keys only with
-- `allow_rsa1024`), and the encrypted session layer for modules without TLS (`secure_session`).
ALTER TABLE products ADD COLUMN x509 BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE products ADD COLUMN x509_jit BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE products ADD COLUMN allow_rsa1024 BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE products ADD COLUMN secure_session BOOLEAN NOT NULL DEFAULT FALSE;
