-- OTA: firmware images (the bytes are in the upload store, named by their SHA-256), each
-- product's Ed25519 signing key (the private half sealed), campaigns and each targeted
-- device's progress, and what each device last said it runs.
CREATE TABLE firmware (
    firmware_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    target TEXT NOT NULL,
    version TEXT NOT NULL,
    -- Rises with every release of a product and target; devices refuse a lower one.
    sequence INTEGER NOT NULL,
    hardware_versions TEXT NOT NULL,
    notes TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (product_key, target, version),
    UNIQUE (product_key, target, sequence)
);
CREATE TABLE ota_keys (
    product_key TEXT PRIMARY KEY REFERENCES products(product_key),
    public_key BLOB NOT NULL,
    private_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE ota_campaigns (
    campaign_id TEXT PRIMARY KEY,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    firmware_id TEXT NOT NULL,
    selector TEXT NOT NULL,
    stages TEXT NOT NULL,
    max_failure_percent INTEGER NOT NULL,
    min_devices_per_stage INTEGER NOT NULL,
    device_timeout_secs INTEGER NOT NULL,
    rollback INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    -- Index into `stages` of the stage being rolled out.
    stage INTEGER NOT NULL,
    reason TEXT,
    -- Failures of the current stage an operator accepted by resuming after a self-pause.
    accepted_failures INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX ota_campaigns_product ON ota_campaigns (product_key, created_at);
CREATE TABLE ota_devices (
    campaign_id TEXT NOT NULL REFERENCES ota_campaigns(campaign_id),
    did TEXT NOT NULL,
    stage INTEGER NOT NULL,
    -- `pending` until the device's stage opens, then the states of its reports.
    state TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    -- When the device's part times out (set when its stage opens).
    deadline_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, did)
);
CREATE INDEX ota_devices_did ON ota_devices (did);
CREATE INDEX ota_devices_deadline ON ota_devices (deadline_at);
CREATE TABLE ota_device_info (
    did TEXT NOT NULL,
    target TEXT NOT NULL,
    version TEXT NOT NULL,
    sequence INTEGER,
    hardware_version TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (did, target)
);
