-- A device may be pre-registered with an Ed25519 public key made on the device (the key never
-- leaves it); it then answers a challenge at CONNECT (MQTT 5 enhanced authentication). NULL for
-- devices that authenticate with their secret only.
ALTER TABLE devices ADD COLUMN public_key BLOB;
