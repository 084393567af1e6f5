-- More ways for a product's devices to prove who they are: client certificates chained to the
-- product's CAs (`x509`, with just-in-time registration `x509_jit`, and RSA-1024 keys only with
-- `allow_rsa1024`), and the encrypted session layer for modules without TLS (`secure_session`).
ALTER TABLE products ADD COLUMN x509 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN x509_jit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN allow_rsa1024 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN secure_session INTEGER NOT NULL DEFAULT 0;
