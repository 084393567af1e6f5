//! Campaigns: which devices get an image, in which stages, and when a rollout stops itself.
//!
//! A campaign's devices are chosen and split into stages when it is created (cumulative
//! percentages of the matching devices, each stage at least `min_devices_per_stage`). A stage
//! opens by giving each of its devices a deadline; the next opens only when every device of the
//! current one finished (succeeded, failed or timed out). Failures and timeouts over
//! `max_failure_percent` of a stage pause the campaign with the reason; an operator who resumes
//! accepts the failures so far. Deadlines are checked by one periodic sweep for all campaigns
//! ([`Core::run_ota_sweeper`]), never by a task per device.
//!
//! A device succeeds only when it connects again and its connect-time report names the new
//! version (`device`): a status saying so is not enough.

use super::split_list;
use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, Actor, AuditEvent};
use crate::secret::random_from;
use crate::{Core, Error, Result};
use rampart_proto::ota::OtaState;
use rampart_store::{CampaignRow, OtaCandidate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which devices of the product a campaign is for; every given list must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Devices whose last check named one of these hardware versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_versions: Option<Vec<String>>,
    /// Devices whose last check named one of these running versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_versions: Option<Vec<String>>,
    /// These devices only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dids: Option<Vec<String>>,
}

/// A campaign as created through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub firmware_id: String,
    #[serde(default)]
    pub selector: Selector,
    /// Cumulative percentages of the selected devices, rising, ending at most at 100.
    #[serde(default = "default_stages")]
    pub stages: Vec<u32>,
    #[serde(default = "default_failure_percent")]
    pub max_failure_percent: u32,
    #[serde(default = "default_min_devices")]
    pub min_devices_per_stage: u32,
    #[serde(default = "default_timeout")]
    pub device_timeout_secs: u64,
    /// Roll out a firmware with a lower sequence than the newest of its target: devices accept
    /// it only because the manifest says so, so only an owner may ask.
    #[serde(default)]
    pub rollback: bool,
}

fn default_stages() -> Vec<u32> {
    vec![1, 10, 100]
}
fn default_failure_percent() -> u32 {
    5
}
fn default_min_devices() -> u32 {
    1
}
fn default_timeout() -> u64 {
    3600
}

/// Most devices one campaign may target.
pub const MAX_CAMPAIGN_DEVICES: usize = 1_000_000;
/// Longest device timeout: 30 days.
const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;

/// Whether [`Core::campaign_advance`] looks for untold devices of the open stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tell {
    /// Always (a sweep, a new or resumed campaign).
    Pending,
    /// Only when a stage opened during this call (after a device's report).
    OnOpen,
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignView {
    pub campaign_id: String,
    pub product_key: String,
    pub firmware_id: String,
    pub state: String,
    /// The stage being rolled out, from 1.
    pub stage: i64,
    pub stages: Vec<u32>,
    /// Why the campaign paused or stopped, when it did.
    pub reason: Option<String>,
    pub counts: BTreeMap<&'static str, i64>,
    /// Devices in the campaign, `pending` (not told yet) included.
    pub devices: i64,
    pub selector: Selector,
    pub max_failure_percent: i64,
    pub min_devices_per_stage: i64,
    pub device_timeout_secs: i64,
    pub rollback: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One device's part in a campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignDevice {
    pub did: String,
    /// From 1.
    pub stage: i64,
    /// `pending` until its stage opens and it is told, then as in a campaign's `counts`.
    pub state: String,
    pub bytes: i64,
    pub reason: Option<String>,
    /// When the device's part times out (set when its stage opens).
    pub deadline_at: Option<i64>,
    pub updated_at: i64,
}

/// What a campaign action may do from which state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Pause,
    Resume,
    Abort,
}

/// Split `n` devices into stages by cumulative percentages, each stage at least `min` devices
/// (as long as devices remain): the number of devices in each stage.
pub fn stage_sizes(n: usize, stages: &[u32], min: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(stages.len());
    let mut taken = 0usize;
    for &p in stages {
        let cum = (n * p as usize).div_ceil(100);
        let size = cum.saturating_sub(taken).max(min).min(n - taken);
        out.push(size);
        taken += size;
    }
    out
}

fn check_new(c: &NewCampaign) -> Result<()> {
    if c.stages.is_empty() || c.stages.len() > 20 {
        return Err(Error::Invalid("`stages`: 1 to 20 percentages".into()));
    }
    if !c.stages.windows(2).all(|w| w[0] < w[1]) || c.stages.iter().any(|&p| p == 0 || p > 100) {
        return Err(Error::Invalid(
            "`stages` are cumulative percentages: rising, each 1..=100".into(),
        ));
    }
    if c.max_failure_percent > 100 {
        return Err(Error::Invalid("`max_failure_percent`: 0..=100".into()));
    }
    if c.min_devices_per_stage > 100_000 {
        return Err(Error::Invalid("`min_devices_per_stage`: 0..=100000".into()));
    }
    if c.device_timeout_secs == 0 || c.device_timeout_secs > MAX_TIMEOUT_SECS {
        return Err(Error::Invalid(format!(
            "`device_timeout_secs`: 1..={MAX_TIMEOUT_SECS}"
        )));
    }
    let lists = [
        &c.selector.hardware_versions,
        &c.selector.from_versions,
        &c.selector.dids,
    ];
    if lists
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| l.len() > MAX_CAMPAIGN_DEVICES))
    {
        return Err(Error::Invalid("a selector list is too long".into()));
    }
    Ok(())
}

fn matches(sel: &Selector, fw_hw: &[String], fw_version: &str, c: &OtaCandidate) -> bool {
    let has = |list: &Option<Vec<String>>, v: Option<&str>| match list {
        None => true,
        Some(l) => v.is_some_and(|v| l.iter().any(|x| x == v)),
    };
    if !has(&sel.dids, Some(&c.did)) {
        return false;
    }
    if !has(&sel.hardware_versions, c.hardware_version.as_deref()) {
        return false;
    }
    if !has(&sel.from_versions, c.version.as_deref()) {
        return false;
    }
    // An image declared for some hardware goes only to devices known to be that hardware.
    if !fw_hw.is_empty()
        && !c
            .hardware_version
            .as_deref()
            .is_some_and(|h| fw_hw.iter().any(|x| x == h))
    {
        return false;
    }
    // Nothing to do for a device that runs this version already.
    c.version.as_deref() != Some(fw_version)
}

/// A random but fixed order of the devices, so the first stage is not always the oldest dids.
fn shuffle(mut v: Vec<String>, seed: &str) -> Vec<String> {
    use sha2::{Digest, Sha256};
    v.sort_by_cached_key(|d| Sha256::digest(format!("{seed}/{d}").as_bytes()).to_vec());
    v
}

pub(crate) fn parse_stages(row: &CampaignRow) -> Vec<u32> {
    serde_json::from_str(&row.stages).unwrap_or_default()
}

impl Core {
    /// Create and start a campaign: devices chosen and staged, the first stage opened, its
    /// online devices told. Needs `Act::Manage`; `rollback` needs `Act::Secrets` (owners).
    /// A second running or paused campaign for the same product and target is a `Conflict`.
    /// Audited (`ota.campaign_create`).
    pub async fn campaign_create(
        &self,
        caller: &Caller,
        product_key: &str,
        new: NewCampaign,
    ) -> Result<String> {
        self.authorize_product(caller, product_key, Act::Manage)
            .await?;
        check_new(&new)?;
        let fw = self.firmware_of(product_key, &new.firmware_id).await?;
        if new.rollback {
            self.authorize_product(caller, product_key, Act::Secrets)
                .await?;
        }
        let top = self
            .store()
            .max_firmware_sequence(product_key, &fw.target)
            .await?;
        if fw.sequence < top && !new.rollback {
            return Err(Error::Invalid(format!(
                "firmware {} (sequence {}) is older than the newest {} release (sequence {top}): \
                 devices refuse it unless the campaign is a rollback (`\"rollback\": true`, owners only)",
                fw.version, fw.sequence, fw.target
            )));
        }
        for state in ["running", "paused"] {
            for c in self.store().campaigns_in_state(state).await? {
                if c.product_key != product_key {
                    continue;
                }
                if let Some(other) = self.store().firmware(&c.firmware_id).await? {
                    if other.target == fw.target {
                        return Err(Error::Conflict(format!(
                            "campaign {} is {state} for the {} firmware of this product: \
                             abort it or let it finish first",
                            c.campaign_id, fw.target
                        )));
                    }
                }
            }
        }
        let fw_hw = split_list(&fw.hardware_versions);
        let candidates = self.store().ota_candidates(product_key, &fw.target).await?;
        let chosen: Vec<String> = candidates
            .iter()
            .filter(|c| matches(&new.selector, &fw_hw, &fw.version, c))
            .map(|c| c.did.clone())
            .collect();
        if chosen.is_empty() {
            return Err(Error::Invalid(
                "no device of the product matches the selector and the firmware's hardware \
                 versions (or every match runs this version already)"
                    .into(),
            ));
        }
        let campaign_id = format!(
            "cmp_{}",
            random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
        );
        let order = shuffle(chosen, &campaign_id);
        let sizes = stage_sizes(order.len(), &new.stages, new.min_devices_per_stage as usize);
        let mut devices = Vec::with_capacity(order.len());
        let mut it = order.into_iter();
        for (i, n) in sizes.iter().enumerate() {
            for did in it.by_ref().take(*n) {
                devices.push((did, i as i64));
            }
        }
        let now = self.now_ms();
        let row = CampaignRow {
            campaign_id: campaign_id.clone(),
            product_key: product_key.to_owned(),
            firmware_id: fw.firmware_id.clone(),
            selector: serde_json::to_string(&new.selector)
                .map_err(|e| Error::Internal(e.to_string()))?,
            stages: serde_json::to_string(&new.stages)
                .map_err(|e| Error::Internal(e.to_string()))?,
            max_failure_percent: i64::from(new.max_failure_percent),
            min_devices_per_stage: i64::from(new.min_devices_per_stage),
            device_timeout_secs: new.device_timeout_secs as i64,
            rollback: new.rollback,
            state: "running".into(),
            stage: 0,
            reason: None,
            accepted_failures: 0,
            created_by: format!("{}:{}", caller.actor().kind, caller.actor().id),
            created_at: now,
            updated_at: now,
        };
        self.store().insert_campaign(&row, &devices).await?;
        self.store()
            .open_ota_stage(&campaign_id, 0, now + row.device_timeout_secs * 1000)
            .await?;
        self.audit(
            AuditEvent::new(&caller.actor(), action::OTA_CAMPAIGN_CREATE, "ok")
                .target(format!("campaign:{campaign_id}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!(
                    "firmware={} version={} devices={} stages={:?} rollback={}",
                    fw.firmware_id,
                    fw.version,
                    devices.len(),
                    sizes,
                    new.rollback
                )),
        )
        .await;
        self.campaign_advance(&campaign_id, Tell::Pending).await?;
        Ok(campaign_id)
    }

    /// A campaign of `product_key` (another product's is `NotFound`).
    async fn campaign_of(&self, product_key: &str, id: &str) -> Result<CampaignRow> {
        self.store()
            .campaign(id)
            .await?
            .filter(|c| c.product_key == product_key)
            .ok_or(Error::NotFound("campaign"))
    }

    /// A campaign with its counts; needs read access to the product.
    pub async fn campaign_get(
        &self,
        caller: &Caller,
        product_key: &str,
        campaign_id: &str,
    ) -> Result<CampaignView> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        let row = self.campaign_of(product_key, campaign_id).await?;
        self.campaign_view(row).await
    }

    /// A page of a product's campaigns, newest first, each with its counts; needs read access
    /// to the product.
    pub async fn campaign_list(
        &self,
        caller: &Caller,
        product_key: &str,
        page: i64,
        limit: i64,
    ) -> Result<(Vec<CampaignView>, i64)> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        let (rows, total) = self
            .store()
            .campaigns_of(product_key, (page - 1) * limit, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.campaign_view(row).await?);
        }
        Ok((out, total))
    }

    pub(crate) async fn campaign_view(&self, row: CampaignRow) -> Result<CampaignView> {
        let mut counts: BTreeMap<&'static str, i64> =
            OtaState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let mut devices = 0;
        for (state, n) in self.store().ota_counts(&row.campaign_id, None).await? {
            devices += n;
            if let Some(s) = OtaState::parse(&state) {
                counts.insert(s.as_str(), n);
            }
        }
        Ok(CampaignView {
            stages: parse_stages(&row),
            selector: serde_json::from_str(&row.selector).unwrap_or_default(),
            campaign_id: row.campaign_id,
            product_key: row.product_key,
            firmware_id: row.firmware_id,
            state: row.state,
            stage: row.stage + 1,
            reason: row.reason,
            counts,
            devices,
            max_failure_percent: row.max_failure_percent,
            min_devices_per_stage: row.min_devices_per_stage,
            device_timeout_secs: row.device_timeout_secs,
            rollback: row.rollback,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// A page of a campaign's devices (by stage, then did) with their state, bytes and reason;
    /// needs read access to the product.
    pub async fn campaign_devices(
        &self,
        caller: &Caller,
        product_key: &str,
        campaign_id: &str,
        page: i64,
        limit: i64,
    ) -> Result<(Vec<CampaignDevice>, i64)> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        self.campaign_of(product_key, campaign_id).await?;
        let (rows, total) = self
            .store()
            .list_ota_devices(campaign_id, (page - 1) * limit, limit)
            .await?;
        Ok((
            rows.into_iter()
                .map(|r| CampaignDevice {
                    did: r.did,
                    stage: r.stage + 1,
                    state: r.state,
                    bytes: r.bytes,
                    reason: r.reason,
                    deadline_at: r.deadline_at,
                    updated_at: r.updated_at,
                })
                .collect(),
            total,
        ))
    }

    /// Pause, resume or abort a campaign. Pausing stops new notifications and deadlines; resuming
    /// gives unfinished devices a fresh deadline and accepts the current stage's failures so far;
    /// aborting ends it (devices asking get no manifest). A finished or aborted campaign is a
    /// `Conflict`, as is pausing a paused one. Audited.
    pub async fn campaign_act(
        &self,
        caller: &Caller,
        product_key: &str,
        campaign_id: &str,
        what: CampaignAction,
    ) -> Result<CampaignView> {
        self.authorize_product(caller, product_key, Act::Manage)
            .await?;
        let row = self.campaign_of(product_key, campaign_id).await?;
        let now = self.now_ms();
        let (to, reason, accepted, audit_action) = match (what, row.state.as_str()) {
            (CampaignAction::Pause, "running") => (
                "paused",
                Some("paused by an operator".to_owned()),
                row.accepted_failures,
                action::OTA_CAMPAIGN_PAUSE,
            ),
            (CampaignAction::Resume, "paused") => {
                let failures = self.stage_failures(&row).await?;
                ("running", None, failures, action::OTA_CAMPAIGN_RESUME)
            }
            (CampaignAction::Abort, "running" | "paused") => (
                "aborted",
                Some("aborted by an operator".to_owned()),
                row.accepted_failures,
                action::OTA_CAMPAIGN_ABORT,
            ),
            (_, state) => {
                return Err(Error::Conflict(format!(
                    "the campaign is {state}; cannot {}",
                    match what {
                        CampaignAction::Pause => "pause it",
                        CampaignAction::Resume => "resume it",
                        CampaignAction::Abort => "abort it",
                    }
                )))
            }
        };
        if !self
            .store()
            .update_campaign(
                campaign_id,
                &row.state,
                row.stage,
                to,
                row.stage,
                reason.as_deref(),
                accepted,
                now,
            )
            .await?
        {
            return Err(Error::Conflict(
                "the campaign changed meanwhile; read it and try again".into(),
            ));
        }
        if what == CampaignAction::Resume {
            self.store()
                .extend_ota_deadlines(campaign_id, now + row.device_timeout_secs * 1000)
                .await?;
        }
        self.audit(
            AuditEvent::new(&caller.actor(), audit_action, "ok")
                .target(format!("campaign:{campaign_id}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!("from={} stage={}", row.state, row.stage + 1)),
        )
        .await;
        if what == CampaignAction::Resume {
            self.campaign_advance(campaign_id, Tell::Pending).await?;
        }
        let row = self.campaign_of(product_key, campaign_id).await?;
        self.campaign_view(row).await
    }

    /// Failed and timed-out devices of the campaign's current stage.
    async fn stage_failures(&self, row: &CampaignRow) -> Result<i64> {
        Ok(self
            .store()
            .ota_counts(&row.campaign_id, Some(row.stage))
            .await?
            .into_iter()
            .filter(|(s, _)| s == "failed" || s == "timed_out")
            .map(|(_, n)| n)
            .sum())
    }

    /// Look at a running campaign after something changed: pause it when its stage's failures
    /// pass the threshold, open the next stage when every device of this one finished (or end
    /// it), and tell the online devices of open stages that were not told yet — on every call
    /// with [`Tell::Pending`], only when a stage just opened with [`Tell::OnOpen`] (a device's
    /// report: looking through every untold device of the stage per report would cost a scan
    /// of the stage for each of its devices).
    pub(crate) async fn campaign_advance(&self, campaign_id: &str, tell: Tell) -> Result<()> {
        let mut opened = false;
        // A stage with no devices left to wait for opens the next at once; bounded by the
        // number of stages.
        for _ in 0..=21 {
            let Some(row) = self.store().campaign(campaign_id).await? else {
                return Ok(());
            };
            if row.state != "running" {
                return Ok(());
            }
            let stages = parse_stages(&row);
            let counts = self
                .store()
                .ota_counts(campaign_id, Some(row.stage))
                .await?;
            let total: i64 = counts.iter().map(|(_, n)| n).sum();
            let failed: i64 = counts
                .iter()
                .filter(|(s, _)| s == "failed" || s == "timed_out")
                .map(|(_, n)| n)
                .sum();
            let open: i64 = counts
                .iter()
                .filter(|(s, _)| OtaState::parse(s).is_none_or(|s| !s.is_final()))
                .map(|(_, n)| n)
                .sum();
            let counted = (failed - row.accepted_failures).max(0);
            let now = self.now_ms();
            if total > 0 && counted * 100 > row.max_failure_percent * total {
                let reason = format!(
                    "stage {}: {failed} of {total} devices failed or timed out ({:.1}%), over \
                     max_failure_percent {}%{}",
                    row.stage + 1,
                    failed as f64 * 100.0 / total as f64,
                    row.max_failure_percent,
                    if row.accepted_failures > 0 {
                        format!(" ({} accepted at the last resume)", row.accepted_failures)
                    } else {
                        String::new()
                    }
                );
                if self
                    .store()
                    .update_campaign(
                        campaign_id,
                        "running",
                        row.stage,
                        "paused",
                        row.stage,
                        Some(&reason),
                        row.accepted_failures,
                        now,
                    )
                    .await?
                {
                    tracing::warn!(campaign = campaign_id, %reason, "OTA campaign paused itself");
                    self.audit(
                        AuditEvent::new(&Actor::admin(), action::OTA_CAMPAIGN_SELF_PAUSE, "paused")
                            .target(format!("campaign:{campaign_id}"))
                            .tenant_opt(self.product_tenant(&row.product_key).await)
                            .detail(reason),
                    )
                    .await;
                }
                return Ok(());
            }
            if open > 0 {
                if tell == Tell::Pending || opened {
                    self.notify_pending(&row).await?;
                }
                return Ok(());
            }
            let next = row.stage + 1;
            let done = next as usize >= stages.len();
            let (state, stage) = if done {
                ("done", row.stage)
            } else {
                ("running", next)
            };
            if !self
                .store()
                .update_campaign(
                    campaign_id,
                    "running",
                    row.stage,
                    state,
                    stage,
                    None,
                    0,
                    now,
                )
                .await?
            {
                // Another report or node moved it first.
                return Ok(());
            }
            if done {
                tracing::info!(campaign = campaign_id, "OTA campaign done");
                return Ok(());
            }
            self.store()
                .open_ota_stage(campaign_id, next, now + row.device_timeout_secs * 1000)
                .await?;
            opened = true;
        }
        Ok(())
    }

    /// Send the manifest to every online device of the campaign's open stages not told yet.
    async fn notify_pending(&self, row: &CampaignRow) -> Result<()> {
        let pending = self
            .store()
            .ota_pending(&row.campaign_id, row.stage)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let Some(fw) = self.store().firmware(&row.firmware_id).await? else {
            return Ok(());
        };
        for did in pending {
            if !self.bus().is_attached(&did) {
                continue;
            }
            self.offer_manifest(row, &fw, &did).await?;
        }
        Ok(())
    }

    /// Every running campaign looked at once: deadlines passed become `timed_out`, stages
    /// advance, devices that came online are told.
    pub async fn ota_sweep(&self) -> Result<()> {
        let expired = self.store().expire_ota_devices(self.now_ms()).await?;
        for (campaign_id, did) in &expired {
            self.ota_device_event(campaign_id, did, OtaState::TimedOut, None, None)
                .await;
        }
        for c in self.store().campaigns_in_state("running").await? {
            self.campaign_advance(&c.campaign_id, Tell::Pending).await?;
        }
        Ok(())
    }

    /// Sweep campaigns every `every` until `stop` resolves.
    pub async fn run_ota_sweeper(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.ota_sweep().await {
                        tracing::error!(error = %e, "OTA sweep failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_split_by_cumulative_percent_with_a_minimum() {
        assert_eq!(stage_sizes(1000, &[1, 10, 100], 1), [10, 90, 900]);
        assert_eq!(stage_sizes(10, &[1, 10, 100], 1), [1, 1, 8]);
        assert_eq!(stage_sizes(10, &[1, 10, 100], 3), [3, 3, 4]);
        assert_eq!(stage_sizes(3, &[50, 100], 5), [3, 0]);
        assert_eq!(stage_sizes(100, &[10, 50], 1), [10, 40]);
    }

    #[test]
    fn selectors_and_hardware_lists_narrow_the_devices() {
        let c = |did: &str, v: Option<&str>, hw: Option<&str>| OtaCandidate {
            did: did.into(),
            version: v.map(Into::into),
            hardware_version: hw.map(Into::into),
        };
        let any = Selector::default();
        assert!(matches(&any, &[], "2.0.0", &c("a", None, None)));
        assert!(!matches(&any, &[], "2.0.0", &c("a", Some("2.0.0"), None)));
        let hw = vec!["B1".to_owned()];
        assert!(!matches(&any, &hw, "2.0.0", &c("a", Some("1.0.0"), None)));
        assert!(matches(
            &any,
            &hw,
            "2.0.0",
            &c("a", Some("1.0.0"), Some("B1"))
        ));
        let from = Selector {
            from_versions: Some(vec!["1.0.0".into()]),
            ..Default::default()
        };
        assert!(matches(&from, &[], "2.0.0", &c("a", Some("1.0.0"), None)));
        assert!(!matches(&from, &[], "2.0.0", &c("a", Some("1.1.0"), None)));
        let dids = Selector {
            dids: Some(vec!["b".into()]),
            ..Default::default()
        };
        assert!(!matches(&dids, &[], "2.0.0", &c("a", None, None)));
        assert!(matches(&dids, &[], "2.0.0", &c("b", None, None)));
    }
}
