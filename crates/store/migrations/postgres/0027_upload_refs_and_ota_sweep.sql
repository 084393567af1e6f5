-- Who holds each file of the content-addressed upload store. Firmware images and allowlist files
-- share the store, so identical bytes are one file; a file leaves the store only when its last
-- holder is gone. `holder` is `firmware:<firmware_id>` or `allowlist:<product_key>`.
CREATE TABLE upload_refs (
    sha256 TEXT NOT NULL,
    holder TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, holder)
);
-- The holders that exist already: every firmware row, and every allowlist file whose upload the
-- audit log recorded (its detail names the hash as `sha256=<64 hex>`).
INSERT INTO upload_refs (sha256, holder, created_at)
SELECT sha256, 'firmware:' || firmware_id, created_at FROM firmware;
INSERT INTO upload_refs (sha256, holder, created_at)
SELECT substring(detail from 'sha256=([0-9a-f]{64})'), 'allowlist:' || substr(target, 9), MIN(ts)
FROM audit
WHERE action = 'allowlist.upload' AND outcome = 'ok' AND target LIKE 'product:%'
  AND detail ~ 'sha256=[0-9a-f]{64}'
GROUP BY 1, 2
ON CONFLICT DO NOTHING;

-- The campaign sweep times out the unfinished devices whose deadline passed: an index of the
-- unfinished ones only, so finished parts (most of them, over time) are never visited again.
DROP INDEX ota_devices_deadline;
CREATE INDEX ota_devices_open_deadline ON ota_devices (deadline_at)
    WHERE state NOT IN ('succeeded', 'failed', 'timed_out');
-- The devices of a campaign not told yet, without reading the campaign's other rows.
CREATE INDEX ota_devices_untold ON ota_devices (campaign_id, state, stage);
