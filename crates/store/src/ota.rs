//! OTA rows: firmware images (their bytes live in the upload store, named by SHA-256), the
//! products' OTA signing keys (private half sealed by the caller), campaigns, each targeted
//! device's progress, and what each device last said it runs.
//!
//! Which transitions are legal is decided in `rampart-core`; the statements here only apply a
//! transition when the row is still in one of the states the caller names, so two nodes (or a
//! report racing the timeout sweep) cannot both move a device.

use crate::{map_conflict, Result, Store};

/// One firmware image of a product.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FirmwareRow {
    pub firmware_id: String,
    pub product_key: String,
    pub target: String,
    pub version: String,
    pub sequence: i64,
    /// Comma-separated; empty for every hardware version.
    pub hardware_versions: String,
    pub notes: String,
    pub size: i64,
    pub md5: String,
    pub sha256: String,
    pub created_by: String,
    pub created_at: i64,
}

/// A product's OTA signing key: the public half, and the private half sealed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OtaKeyRow {
    pub product_key: String,
    pub public_key: Vec<u8>,
    pub private_enc: Vec<u8>,
    pub created_at: i64,
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CampaignRow {
    pub campaign_id: String,
    pub product_key: String,
    pub firmware_id: String,
    /// JSON object.
    pub selector: String,
    /// JSON array of percentages.
    pub stages: String,
    pub max_failure_percent: i64,
    pub min_devices_per_stage: i64,
    pub device_timeout_secs: i64,
    pub rollback: bool,
    pub state: String,
    pub stage: i64,
    pub reason: Option<String>,
    pub accepted_failures: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One device's part in a campaign.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OtaDeviceRow {
    pub campaign_id: String,
    pub did: String,
    pub stage: i64,
    pub state: String,
    pub bytes: i64,
    pub reason: Option<String>,
    pub deadline_at: Option<i64>,
    pub updated_at: i64,
}

/// A device of a product with what it last said it runs for one target (`None` before its
/// first check).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OtaCandidate {
    pub did: String,
    pub version: Option<String>,
    pub hardware_version: Option<String>,
}

/// What a device last said it runs for one target.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OtaDeviceInfoRow {
    pub did: String,
    pub target: String,
    pub version: String,
    pub sequence: Option<i64>,
    pub hardware_version: Option<String>,
    pub updated_at: i64,
}

impl Store {
    /// Insert a firmware row with the next sequence of its product and target (the row's own
    /// `sequence` is ignored), and its claim on its file in the upload store; answers the
    /// sequence. `Conflict` when the version exists for the
    /// target, or when another upload took the same sequence at the same moment.
    pub async fn insert_firmware(&self, r: &FirmwareRow) -> Result<i64> {
        let sql = concat!(
            "INSERT INTO firmware (firmware_id, product_key, target, version, sequence, hardware_versions, notes, size, md5, sha256, created_by, created_at) ",
            "VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(sequence), 0) + 1 FROM firmware WHERE product_key = $2 AND target = $3), $5, $6, $7, $8, $9, $10, $11) ",
            "RETURNING sequence"
        );
        let r#ref = "INSERT INTO upload_refs (sha256, holder, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256, holder) DO NOTHING";
        let seq: (i64,) = with_db!(self, p => {
            let mut tx = p.begin().await?;
            let seq: (i64,) = sqlx::query_as(sql)
                .bind(&r.firmware_id)
                .bind(&r.product_key)
                .bind(&r.target)
                .bind(&r.version)
                .bind(&r.hardware_versions)
                .bind(&r.notes)
                .bind(r.size)
                .bind(&r.md5)
                .bind(&r.sha256)
                .bind(&r.created_by)
                .bind(r.created_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_conflict)?;
            sqlx::query(r#ref)
                .bind(&r.sha256)
                .bind(format!("firmware:{}", r.firmware_id))
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            seq
        });
        Ok(seq.0)
    }

    /// The highest sequence of a product's releases for `target` (0 before the first).
    pub async fn max_firmware_sequence(&self, product_key: &str, target: &str) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(sequence), 0) FROM firmware WHERE product_key = $1 AND target = $2";
        let (n,): (i64,) = with_db!(self, p => sqlx::query_as(sql).bind(product_key).bind(target).fetch_one(p).await?);
        Ok(n)
    }

    pub async fn firmware(&self, firmware_id: &str) -> Result<Option<FirmwareRow>> {
        let sql = concat!(
            "SELECT firmware_id, product_key, target, version, sequence, hardware_versions, notes, size, md5, sha256, created_by, created_at ",
            "FROM firmware WHERE firmware_id = $1"
        );
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(firmware_id).fetch_optional(p).await?))
    }

    /// A page of a product's firmware, newest first, and how many there are.
    pub async fn list_firmware(
        &self,
        product_key: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<FirmwareRow>, i64)> {
        let sql = concat!(
            "SELECT firmware_id, product_key, target, version, sequence, hardware_versions, notes, size, md5, sha256, created_by, created_at ",
            "FROM firmware WHERE product_key = $1 ORDER BY created_at DESC, firmware_id LIMIT $2 OFFSET $3"
        );
        let count = "SELECT COUNT(*) FROM firmware WHERE product_key = $1";
        Ok(with_db!(self, p => {
            let rows = sqlx::query_as(sql).bind(product_key).bind(limit).bind(offset).fetch_all(p).await?;
            let (n,): (i64,) = sqlx::query_as(count).bind(product_key).fetch_one(p).await?;
            (rows, n)
        }))
    }

    /// Delete a firmware row, and its claim on its file in the upload store, unless a running or
    /// paused campaign uses it. `Ok(None)`: no such row; `Conflict`: in use; otherwise the row
    /// and whether anything else (another image, an allowlist file) still holds its bytes.
    pub async fn delete_firmware(&self, firmware_id: &str) -> Result<Option<(FirmwareRow, bool)>> {
        let busy = "SELECT COUNT(*) FROM ota_campaigns WHERE firmware_id = $1 AND state IN ('running', 'paused')";
        let del = concat!(
            "DELETE FROM firmware WHERE firmware_id = $1 ",
            "RETURNING firmware_id, product_key, target, version, sequence, hardware_versions, notes, size, md5, sha256, created_by, created_at"
        );
        let unref = "DELETE FROM upload_refs WHERE sha256 = $1 AND holder = $2";
        let shared = "SELECT COUNT(*) FROM upload_refs WHERE sha256 = $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let (n,): (i64,) = sqlx::query_as(busy).bind(firmware_id).fetch_one(&mut *tx).await?;
            if n > 0 {
                tx.rollback().await?;
                return Err(crate::StoreError::Conflict);
            }
            let row: Option<FirmwareRow> = sqlx::query_as(del).bind(firmware_id).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query(unref).bind(&row.sha256).bind(format!("firmware:{firmware_id}")).execute(&mut *tx).await?;
            let (others,): (i64,) = sqlx::query_as(shared).bind(&row.sha256).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some((row, others > 0)))
        })
    }

    pub async fn ota_key(&self, product_key: &str) -> Result<Option<OtaKeyRow>> {
        let sql = "SELECT product_key, public_key, private_enc, created_at FROM ota_keys WHERE product_key = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_optional(p).await?))
    }

    /// Keep `r` unless the product has a key already; answers the product's key either way (the
    /// first writer wins when two make one at once).
    pub async fn insert_ota_key(&self, r: &OtaKeyRow) -> Result<OtaKeyRow> {
        let ins = "INSERT INTO ota_keys (product_key, public_key, private_enc, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (product_key) DO NOTHING";
        with_db!(self, p => {
            sqlx::query(ins)
                .bind(&r.product_key)
                .bind(&r.public_key)
                .bind(&r.private_enc)
                .bind(r.created_at)
                .execute(p)
                .await?;
        });
        self.ota_key(&r.product_key)
            .await?
            .ok_or(crate::StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// Every device of a product with what it runs for `target`, by did.
    pub async fn ota_candidates(
        &self,
        product_key: &str,
        target: &str,
    ) -> Result<Vec<OtaCandidate>> {
        let sql = concat!(
            "SELECT d.did, i.version, i.hardware_version FROM devices d ",
            "LEFT JOIN ota_device_info i ON i.did = d.did AND i.target = $2 ",
            "WHERE d.product_key = $1 ORDER BY d.did"
        );
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(product_key).bind(target).fetch_all(p).await?),
        )
    }

    /// Insert a campaign and its devices (`(did, stage index)`) in one transaction.
    pub async fn insert_campaign(&self, c: &CampaignRow, devices: &[(String, i64)]) -> Result<()> {
        let sql = concat!(
            "INSERT INTO ota_campaigns (campaign_id, product_key, firmware_id, selector, stages, max_failure_percent, min_devices_per_stage, device_timeout_secs, rollback, state, stage, reason, accepted_failures, created_by, created_at, updated_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        let dev = "INSERT INTO ota_devices (campaign_id, did, stage, state, bytes, reason, deadline_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, NULL, NULL, $4)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(&c.campaign_id)
                .bind(&c.product_key)
                .bind(&c.firmware_id)
                .bind(&c.selector)
                .bind(&c.stages)
                .bind(c.max_failure_percent)
                .bind(c.min_devices_per_stage)
                .bind(c.device_timeout_secs)
                .bind(c.rollback)
                .bind(&c.state)
                .bind(c.stage)
                .bind(&c.reason)
                .bind(c.accepted_failures)
                .bind(&c.created_by)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_conflict)?;
            for (did, stage) in devices {
                sqlx::query(dev).bind(&c.campaign_id).bind(did).bind(stage).bind(c.created_at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn campaign(&self, campaign_id: &str) -> Result<Option<CampaignRow>> {
        let sql = concat!(
            "SELECT campaign_id, product_key, firmware_id, selector, stages, max_failure_percent, min_devices_per_stage, device_timeout_secs, rollback, state, stage, reason, accepted_failures, created_by, created_at, updated_at ",
            "FROM ota_campaigns WHERE campaign_id = $1"
        );
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(campaign_id).fetch_optional(p).await?))
    }

    /// A page of a product's campaigns, newest first, and how many it has.
    pub async fn campaigns_of(
        &self,
        product_key: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<CampaignRow>, i64)> {
        let sql = concat!(
            "SELECT campaign_id, product_key, firmware_id, selector, stages, max_failure_percent, min_devices_per_stage, device_timeout_secs, rollback, state, stage, reason, accepted_failures, created_by, created_at, updated_at ",
            "FROM ota_campaigns WHERE product_key = $1 ORDER BY created_at DESC, campaign_id DESC LIMIT $2 OFFSET $3"
        );
        let count = "SELECT COUNT(*) FROM ota_campaigns WHERE product_key = $1";
        Ok(with_db!(self, p => {
            let rows = sqlx::query_as(sql).bind(product_key).bind(limit).bind(offset).fetch_all(p).await?;
            let (n,): (i64,) = sqlx::query_as(count).bind(product_key).fetch_one(p).await?;
            (rows, n)
        }))
    }

    /// Campaigns in `state`, oldest first.
    pub async fn campaigns_in_state(&self, state: &str) -> Result<Vec<CampaignRow>> {
        let sql = concat!(
            "SELECT campaign_id, product_key, firmware_id, selector, stages, max_failure_percent, min_devices_per_stage, device_timeout_secs, rollback, state, stage, reason, accepted_failures, created_by, created_at, updated_at ",
            "FROM ota_campaigns WHERE state = $1 ORDER BY created_at, campaign_id"
        );
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(state).fetch_all(p).await?))
    }

    /// Move a campaign to `state` (with `stage`, `reason` and `accepted_failures`) if it is
    /// still in `from` and at stage `from_stage`; false when it moved meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_campaign(
        &self,
        campaign_id: &str,
        from: &str,
        from_stage: i64,
        state: &str,
        stage: i64,
        reason: Option<&str>,
        accepted_failures: i64,
        now: i64,
    ) -> Result<bool> {
        let sql = concat!(
            "UPDATE ota_campaigns SET state = $4, stage = $5, reason = $6, accepted_failures = $7, updated_at = $8 ",
            "WHERE campaign_id = $1 AND state = $2 AND stage = $3"
        );
        Ok(with_db!(self, p => sqlx::query(sql)
            .bind(campaign_id).bind(from).bind(from_stage).bind(state).bind(stage)
            .bind(reason).bind(accepted_failures).bind(now)
            .execute(p).await?.rows_affected() == 1))
    }

    /// Open the devices of a stage: each gets its deadline.
    pub async fn open_ota_stage(
        &self,
        campaign_id: &str,
        stage: i64,
        deadline_at: i64,
    ) -> Result<u64> {
        let sql = "UPDATE ota_devices SET deadline_at = $3 WHERE campaign_id = $1 AND stage = $2 AND deadline_at IS NULL";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(campaign_id).bind(stage).bind(deadline_at).execute(p).await?.rows_affected()),
        )
    }

    /// Give every unfinished device of the open stages a new deadline (after a pause).
    pub async fn extend_ota_deadlines(&self, campaign_id: &str, deadline_at: i64) -> Result<u64> {
        let sql = concat!(
            "UPDATE ota_devices SET deadline_at = $2 WHERE campaign_id = $1 AND deadline_at IS NOT NULL ",
            "AND state NOT IN ('succeeded', 'failed', 'timed_out')"
        );
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(campaign_id).bind(deadline_at).execute(p).await?.rows_affected()),
        )
    }

    /// How many devices of a campaign are in each state (`stage` given: that stage only).
    pub async fn ota_counts(
        &self,
        campaign_id: &str,
        stage: Option<i64>,
    ) -> Result<Vec<(String, i64)>> {
        let all = "SELECT state, COUNT(*) FROM ota_devices WHERE campaign_id = $1 GROUP BY state";
        let one = "SELECT state, COUNT(*) FROM ota_devices WHERE campaign_id = $1 AND stage = $2 GROUP BY state";
        Ok(with_db!(self, p => match stage {
            None => sqlx::query_as(all).bind(campaign_id).fetch_all(p).await?,
            Some(s) => sqlx::query_as(one).bind(campaign_id).bind(s).fetch_all(p).await?,
        }))
    }

    pub async fn ota_device(&self, campaign_id: &str, did: &str) -> Result<Option<OtaDeviceRow>> {
        let sql = "SELECT campaign_id, did, stage, state, bytes, reason, deadline_at, updated_at FROM ota_devices WHERE campaign_id = $1 AND did = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(campaign_id).bind(did).fetch_optional(p).await?),
        )
    }

    /// A page of a campaign's devices by stage and did, and how many there are.
    pub async fn list_ota_devices(
        &self,
        campaign_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<OtaDeviceRow>, i64)> {
        let sql = concat!(
            "SELECT campaign_id, did, stage, state, bytes, reason, deadline_at, updated_at FROM ota_devices ",
            "WHERE campaign_id = $1 ORDER BY stage, did LIMIT $2 OFFSET $3"
        );
        let count = "SELECT COUNT(*) FROM ota_devices WHERE campaign_id = $1";
        Ok(with_db!(self, p => {
            let rows = sqlx::query_as(sql).bind(campaign_id).bind(limit).bind(offset).fetch_all(p).await?;
            let (n,): (i64,) = sqlx::query_as(count).bind(campaign_id).fetch_one(p).await?;
            (rows, n)
        }))
    }

    /// The device's parts in campaigns that are running or paused, newest campaign first.
    pub async fn ota_device_active(&self, did: &str) -> Result<Vec<(CampaignRow, OtaDeviceRow)>> {
        let sql = concat!(
            "SELECT campaign_id, did, stage, state, bytes, reason, deadline_at, updated_at FROM ota_devices ",
            "WHERE did = $1 AND campaign_id IN (SELECT campaign_id FROM ota_campaigns WHERE state IN ('running', 'paused'))"
        );
        let rows: Vec<OtaDeviceRow> =
            with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_all(p).await?);
        let mut out = Vec::new();
        for d in rows {
            if let Some(c) = self.campaign(&d.campaign_id).await? {
                out.push((c, d));
            }
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.0.created_at));
        Ok(out)
    }

    /// The devices of the open stages of a campaign still `pending` (not told yet).
    pub async fn ota_pending(&self, campaign_id: &str, up_to_stage: i64) -> Result<Vec<String>> {
        let sql = "SELECT did FROM ota_devices WHERE campaign_id = $1 AND stage <= $2 AND state = 'pending' ORDER BY did";
        let rows: Vec<(String,)> = with_db!(self, p => sqlx::query_as(sql).bind(campaign_id).bind(up_to_stage).fetch_all(p).await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Move a device to `state` if it is in one of `from`; `bytes` replaces the byte count when
    /// given. False when the device was in another state (or is not in the campaign).
    #[allow(clippy::too_many_arguments)]
    pub async fn set_ota_device_state(
        &self,
        campaign_id: &str,
        did: &str,
        from: &[&str],
        state: &str,
        bytes: Option<i64>,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let sql = concat!(
            "UPDATE ota_devices SET state = $3, bytes = COALESCE($4, bytes), reason = $5, updated_at = $6 ",
            "WHERE campaign_id = $1 AND did = $2 AND state IN ($7, $8, $9, $10, $11, $12, $13)"
        );
        // A fixed number of placeholders keeps the text a literal; unused ones repeat the first.
        let f = |i: usize| from.get(i).or(from.first()).copied().unwrap_or("");
        Ok(with_db!(self, p => sqlx::query(sql)
            .bind(campaign_id).bind(did).bind(state).bind(bytes).bind(reason).bind(now)
            .bind(f(0)).bind(f(1)).bind(f(2)).bind(f(3)).bind(f(4)).bind(f(5)).bind(f(6))
            .execute(p).await?.rows_affected() == 1))
    }

    /// Time out every unfinished device of a running campaign whose deadline passed; answers
    /// `(campaign_id, did)` of each. Driven by the partial index of unfinished parts by deadline
    /// (`ota_devices_open_deadline`: its condition is repeated word for word so SQLite uses it),
    /// each row's campaign looked up by key: the cost follows the expired rows, not the size of
    /// the running campaigns.
    pub async fn expire_ota_devices(&self, now: i64) -> Result<Vec<(String, String)>> {
        let sql = concat!(
            "UPDATE ota_devices SET state = 'timed_out', reason = 'no answer before the deadline', updated_at = $1 ",
            "WHERE deadline_at < $1 AND state NOT IN ('succeeded', 'failed', 'timed_out') ",
            "AND EXISTS (SELECT 1 FROM ota_campaigns c WHERE c.campaign_id = ota_devices.campaign_id AND c.state = 'running') ",
            "RETURNING campaign_id, did"
        );
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(now).fetch_all(p).await?))
    }

    /// The device's parts in campaigns, newest campaign first, at most `limit`, each with its
    /// campaign.
    pub async fn ota_device_parts(
        &self,
        did: &str,
        limit: i64,
    ) -> Result<Vec<(CampaignRow, OtaDeviceRow)>> {
        let sql = concat!(
            "SELECT d.campaign_id, d.did, d.stage, d.state, d.bytes, d.reason, d.deadline_at, d.updated_at ",
            "FROM ota_devices d JOIN ota_campaigns c ON c.campaign_id = d.campaign_id ",
            "WHERE d.did = $1 ORDER BY c.created_at DESC, c.campaign_id LIMIT $2"
        );
        let rows: Vec<OtaDeviceRow> =
            with_db!(self, p => sqlx::query_as(sql).bind(did).bind(limit).fetch_all(p).await?);
        let mut out = Vec::with_capacity(rows.len());
        for d in rows {
            if let Some(c) = self.campaign(&d.campaign_id).await? {
                out.push((c, d));
            }
        }
        Ok(out)
    }

    /// What the device last said it runs, per target.
    pub async fn ota_device_info(&self, did: &str) -> Result<Vec<OtaDeviceInfoRow>> {
        let sql = "SELECT did, target, version, sequence, hardware_version, updated_at FROM ota_device_info WHERE did = $1 ORDER BY target";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_all(p).await?))
    }

    /// Record what a device runs for a target.
    pub async fn upsert_ota_device_info(
        &self,
        did: &str,
        target: &str,
        version: &str,
        sequence: Option<i64>,
        hardware_version: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let sql = concat!(
            "INSERT INTO ota_device_info (did, target, version, sequence, hardware_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ",
            "ON CONFLICT (did, target) DO UPDATE SET version = excluded.version, sequence = excluded.sequence, ",
            "hardware_version = COALESCE(excluded.hardware_version, ota_device_info.hardware_version), updated_at = excluded.updated_at"
        );
        with_db!(self, p => {
            sqlx::query(sql).bind(did).bind(target).bind(version).bind(sequence).bind(hardware_version).bind(now).execute(p).await?;
        });
        Ok(())
    }
}
