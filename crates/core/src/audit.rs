//! Audit log: every security-relevant act becomes one row (who, what, on what, from where, outcome)
//! and one structured log line. A failed audit write is logged loudly but never fails the act.
//!
//! The rows form a hash chain: each stores the hash of the row before it and its own
//! link, an HMAC-SHA256 over [`chain_hash`]'s canonical encoding under a key derived from the
//! master key, so whoever can write the database but lacks the key cannot recompute the chain
//! after editing it. Chains written before links were keyed (plain SHA-256, [`legacy_chain_hash`])
//! are re-linked once, at start-up ([`Core::upgrade_at_rest`]): the old chain is checked first and
//! the outcome is itself audited (`audit.chain_keyed`), so a break found then stays on record.
//! Appends are serialised twice over: a
//! mutex here (one process) and the chain head row that the store moves in the append's own
//! transaction (several processes or nodes). [`Core::verify_audit_chain`] recomputes the chain and
//! names the first entry that does not match. Rows written before the chain existed have no hashes;
//! the chain starts after them, and they are reported as unchained, not verified.

pub mod action;

use crate::secret::MasterKey;
use crate::{Core, Error, Result};
use rampart_store::{AuditEntryRow, AuditRow};

pub use rampart_store::AuditFilter;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: &'static str,
    pub id: String,
}

impl Actor {
    pub fn admin() -> Actor {
        Actor {
            kind: "admin",
            id: "bootstrap".into(),
        }
    }
    pub fn cli() -> Actor {
        Actor {
            kind: "cli",
            id: "local".into(),
        }
    }
    /// A factory line, by the factory credential that signed its request.
    pub fn factory(credential_id: &str) -> Actor {
        Actor {
            kind: "factory",
            id: credential_id.into(),
        }
    }
    pub fn device(did: &str) -> Actor {
        Actor {
            kind: "device",
            id: did.into(),
        }
    }
    /// An end user.
    pub fn user(user_id: &str) -> Actor {
        Actor {
            kind: "user",
            id: user_id.into(),
        }
    }
    /// Someone who has not proven to be a user yet, named by the login name they gave, masked
    /// (it is an e-mail or phone number, and may belong to someone who later erases their account).
    pub fn user_candidate(username: &str) -> Actor {
        let name: String = username.chars().take(64).collect();
        Actor {
            kind: "user_candidate",
            id: crate::secret::mask::mask_contact(&name),
        }
    }
    /// Someone who has not proven to be a developer yet, named by the e-mail they gave, masked
    /// like [`Actor::user_candidate`].
    pub fn developer_candidate(email: &str) -> Actor {
        let name: String = email.chars().take(64).collect();
        Actor {
            kind: "developer_candidate",
            id: crate::secret::mask::mask_contact(&name),
        }
    }
    /// A device that has not proven its identity yet, named by what it claims.
    pub fn device_candidate(hardware_id: &str) -> Actor {
        Actor {
            kind: "device_candidate",
            id: hardware_id.chars().take(64).collect(),
        }
    }
}

/// One audit entry being built.
#[derive(Debug)]
pub struct AuditEvent(AuditRow);

impl AuditEvent {
    pub fn new(actor: &Actor, action: &str, outcome: &str) -> AuditEvent {
        AuditEvent(AuditRow {
            // stamped by `Core::audit`, from the core's clock
            ts: 0,
            actor_kind: actor.kind.into(),
            actor_id: actor.id.clone(),
            action: action.into(),
            outcome: outcome.chars().take(256).collect(),
            ..Default::default()
        })
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.0.target = Some(t.into());
        self
    }
    pub fn source_ip(mut self, ip: impl Into<String>) -> Self {
        self.0.source_ip = Some(ip.into());
        self
    }
    /// The caller's address when known.
    pub fn source_ip_opt(mut self, ip: Option<String>) -> Self {
        self.0.source_ip = ip;
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.0.detail = Some(d.into());
        self
    }
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.0.tenant = Some(t.into());
        self
    }
    /// The tenant when there is one (an enterprise-owned product's acts).
    pub fn tenant_opt(mut self, t: Option<String>) -> Self {
        self.0.tenant = t;
        self
    }
}

impl Core {
    pub async fn audit(&self, mut ev: AuditEvent) {
        ev.0.ts = self.now_ms();
        let r = &ev.0;
        tracing::info!(
            target: "audit",
            actor_kind = %r.actor_kind, actor_id = %r.actor_id, action = %r.action,
            target = r.target.as_deref().unwrap_or(""), source_ip = r.source_ip.as_deref().unwrap_or(""),
            outcome = %r.outcome, "audit"
        );
        metrics::counter!(crate::telemetry::AUDIT_EVENTS, "action" => r.action.clone())
            .increment(1);
        let _serial = self.audit_lock().lock().await;
        if let Err(e) = self
            .store()
            .append_audit(r, |prev| chain_hash(self.key(), r, prev))
            .await
        {
            tracing::error!(error = %e, action = %r.action, "audit write failed");
        }
    }

    /// The tenant of a product's acts: the owning enterprise, if any (none for an unknown key).
    pub async fn product_tenant(&self, product_key: &str) -> Option<String> {
        self.product(product_key)
            .await
            .ok()
            .and_then(|p| p.enterprise_id.clone())
    }

    /// Recompute the whole chain, oldest entry first; stops at the first entry that fails. The
    /// chain head is read first, so entries appended while this runs are verified too and do not
    /// look like a mismatch; the head must match the entry at its position.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        let head = self.store().audit_chain_head().await?;
        let mut report = ChainReport::default();
        let mut prev = GENESIS.to_owned();
        let mut at_head = (head.entries == 0).then(|| GENESIS.to_owned());
        let mut after = 0;
        loop {
            let page = self.store().audit_entries_after(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for e in page {
                match check_link(&e, &prev, report.entries > 0, |r, p| {
                    chain_hash(self.key(), r, p)
                }) {
                    Link::Legacy => report.unchained += 1,
                    Link::Good(h) => {
                        report.entries += 1;
                        report.last_id = Some(e.id);
                        if report.entries as i64 == head.entries {
                            at_head = Some(h.clone());
                        }
                        prev = h;
                    }
                    Link::Bad(reason) => {
                        report.first_bad = Some(BadEntry { id: e.id, reason });
                        return Ok(report);
                    }
                }
            }
        }
        if at_head.as_deref() != Some(head.last_hash.as_str()) {
            let last = report.last_id.unwrap_or(0);
            report.first_bad = Some(BadEntry {
                id: last + 1,
                reason: format!(
                    "the chain head records {} entries ending in {}..., the log has {} ending in {}...: \
                     entries after id {last} were removed",
                    head.entries,
                    head.last_hash.chars().take(16).collect::<String>(),
                    report.entries,
                    prev.chars().take(16).collect::<String>(),
                ),
            });
        }
        Ok(report)
    }

    /// Re-link, once, a chain written before links were keyed: check each entry against the old
    /// SHA-256 chain while computing its keyed link, then audit the outcome (a break found in the
    /// old chain is named there, since the re-linked chain no longer shows it). Entries from
    /// before any chain, and entries whose hashes were removed, are left as they are.
    pub(crate) async fn key_audit_chain(&self) -> Result<()> {
        let _serial = self.audit_lock().lock().await;
        let mut legacy_prev = GENESIS.to_owned();
        let mut started = false;
        let mut broken: Option<BadEntry> = None;
        let done = self
            .store()
            .relink_audit_once(AUDIT_KEYED_MARKER, self.now_ms(), GENESIS, |e, new_prev| {
                if broken.is_none() {
                    match check_link(e, &legacy_prev, started, legacy_chain_hash) {
                        Link::Legacy => {}
                        Link::Good(h) => {
                            started = true;
                            legacy_prev = h;
                        }
                        Link::Bad(reason) => broken = Some(BadEntry { id: e.id, reason }),
                    }
                }
                let unchained = e.prev_hash.is_none() && e.hash.is_none();
                (!unchained).then(|| chain_hash(self.key(), &e.row, new_prev))
            })
            .await?;
        drop(_serial);
        if !done.ran {
            return Ok(());
        }
        let (outcome, detail) = match &broken {
            None => (
                "ok",
                format!("{} entries re-linked; the old chain was intact", done.rows),
            ),
            Some(b) => (
                "old_chain_broken",
                format!(
                    "{} entries re-linked; the old chain was broken at entry {}: {}",
                    done.rows, b.id, b.reason
                ),
            ),
        };
        if broken.is_some() {
            tracing::error!(%detail, "audit chain re-linked under the audit key");
        } else if done.rows > 0 {
            tracing::info!(%detail, "audit chain re-linked under the audit key");
        }
        if done.rows > 0 || broken.is_some() {
            let system = Actor {
                kind: "system",
                id: "start-up".into(),
            };
            self.audit(AuditEvent::new(&system, action::AUDIT_CHAIN_KEYED, outcome).detail(detail))
                .await;
        }
        Ok(())
    }

    /// A page of one tenant's audit entries, newest first, and how many match.
    pub async fn tenant_audit(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEntryView>, i64)> {
        if filter.to.is_some_and(|t| t < filter.from) {
            return Err(Error::Invalid("from must not be after to".into()));
        }
        let (rows, total) = self
            .store()
            .list_tenant_audit(tenant, filter, offset, limit)
            .await?;
        Ok((rows.into_iter().map(AuditEntryView::from).collect(), total))
    }

    /// A page of the whole log (or, with `tenant`, one tenant's part), newest first: the
    /// operator's view. The caller must be the operator; nothing here checks it.
    pub async fn operator_audit(
        &self,
        tenant: Option<&str>,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEntryView>, i64)> {
        if filter.to.is_some_and(|t| t < filter.from) {
            return Err(Error::Invalid("from must not be after to".into()));
        }
        let (rows, total) = self
            .store()
            .list_any_audit(tenant.unwrap_or(""), filter, offset, limit)
            .await?;
        Ok((rows.into_iter().map(AuditEntryView::from).collect(), total))
    }
}

/// The `settings` key recording that the chain's links are keyed.
pub(crate) const AUDIT_KEYED_MARKER: &str = action::AT_REST_AUDIT_CHAIN_KEYED;

/// The `prev_hash` of the first chained entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The link of an entry: lowercase hex HMAC-SHA256, under the audit key derived from the master
/// key, of `rampart-audit-v2\n` followed by [`entry_encoding`].
pub fn chain_hash(key: &MasterKey, r: &AuditRow, prev_hash: &str) -> String {
    let mut data = b"rampart-audit-v2\n".to_vec();
    data.extend_from_slice(entry_encoding(r, prev_hash).as_bytes());
    key.audit_mac(&data)
}

/// The hash of an entry before links were keyed: lowercase hex SHA-256 of `rampart-audit-v1\n`
/// followed by [`entry_encoding`]. Only checked when such a chain is re-linked.
pub fn legacy_chain_hash(r: &AuditRow, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rampart-audit-v1\n");
    h.update(entry_encoding(r, prev_hash).as_bytes());
    hex::encode(h.finalize())
}

/// The JSON array `[prev_hash, ts, actor_kind, actor_id, tenant, action, target, source_ip,
/// outcome, detail]` (absent fields are `null`). JSON strings make the encoding unambiguous.
fn entry_encoding(r: &AuditRow, prev_hash: &str) -> String {
    serde_json::json!([
        prev_hash,
        r.ts,
        r.actor_kind,
        r.actor_id,
        r.tenant,
        r.action,
        r.target,
        r.source_ip,
        r.outcome,
        r.detail
    ])
    .to_string()
}

enum Link {
    /// Written before the chain existed (and before any chained entry).
    Legacy,
    /// Verified; its hash.
    Good(String),
    Bad(String),
}

fn check_link(
    e: &AuditEntryRow,
    prev: &str,
    started: bool,
    hash: impl Fn(&AuditRow, &str) -> String,
) -> Link {
    let (Some(p), Some(h)) = (&e.prev_hash, &e.hash) else {
        return if started || e.prev_hash.is_some() || e.hash.is_some() {
            Link::Bad("its hash fields were removed".into())
        } else {
            Link::Legacy
        };
    };
    if p != prev {
        return Link::Bad(
            "it does not link to the entry before it (an entry was removed, inserted or reordered)"
                .into(),
        );
    }
    if hash(&e.row, p) != *h {
        return Link::Bad("its contents do not match its hash (the entry was edited)".into());
    }
    Link::Good(h.clone())
}

/// The outcome of [`Core::verify_audit_chain`].
#[derive(Debug, Default, Serialize)]
pub struct ChainReport {
    /// Chained entries verified.
    pub entries: u64,
    /// Entries from before the chain existed (not verifiable).
    pub unchained: u64,
    /// The id of the last verified entry.
    pub last_id: Option<i64>,
    pub first_bad: Option<BadEntry>,
}

/// The first entry that breaks the chain.
#[derive(Debug, Serialize)]
pub struct BadEntry {
    pub id: i64,
    pub reason: String,
}

/// An audit entry as the API shows it: its id, the entry's fields and its hash.
#[derive(Debug, Serialize)]
pub struct AuditEntryView {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditRow,
    pub hash: Option<String>,
}

impl From<AuditEntryRow> for AuditEntryView {
    fn from(e: AuditEntryRow) -> Self {
        AuditEntryView {
            id: e.id,
            entry: e.row,
            hash: e.hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            ts: 1_700_000_000_000,
            actor_kind: "access_key".into(),
            actor_id: "rak_x".into(),
            tenant: Some("ent_a".into()),
            action: "device.command".into(),
            target: Some("device:d1".into()),
            source_ip: Some("127.0.0.1".into()),
            outcome: "sent".into(),
            detail: None,
        }
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[5; 32])
    }

    const ENCODED: &str = concat!(
        "[\"0000000000000000000000000000000000000000000000000000000000000000\",",
        "1700000000000,\"access_key\",\"rak_x\",\"ent_a\",\"device.command\",\"device:d1\",",
        "\"127.0.0.1\",\"sent\",null]"
    );

    #[test]
    fn chain_hash_is_pinned_and_covers_every_field() {
        let k = key();
        let h = chain_hash(&k, &row(), GENESIS);
        // Pinned: a change of the encoding would break every stored chain.
        assert_eq!(
            h,
            k.audit_mac(format!("rampart-audit-v2\n{ENCODED}").as_bytes())
        );
        let mut manual = Sha256::new();
        manual.update(format!("rampart-audit-v1\n{ENCODED}").as_bytes());
        assert_eq!(
            legacy_chain_hash(&row(), GENESIS),
            hex::encode(manual.finalize())
        );
        assert_ne!(h, legacy_chain_hash(&row(), GENESIS));
        assert_ne!(
            h,
            chain_hash(&MasterKey::from_bytes(&[6; 32]), &row(), GENESIS)
        );
        let chain_hash = |r: &AuditRow, p: &str| chain_hash(&k, r, p);
        let edits: [fn(&mut AuditRow); 9] = [
            |r| r.ts += 1,
            |r| r.actor_kind.push('x'),
            |r| r.actor_id.push('x'),
            |r| r.tenant = None,
            |r| r.action.push('x'),
            |r| r.target = Some("device:d2".into()),
            |r| r.source_ip = None,
            |r| r.outcome = "ok".into(),
            |r| r.detail = Some(String::new()),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut r = row();
            edit(&mut r);
            assert_ne!(chain_hash(&r, GENESIS), h, "field {i} not covered");
        }
        assert_ne!(chain_hash(&row(), &h), h, "the previous hash is covered");
        // no ambiguity between fields: moving text from one field to the next changes the hash
        let mut a = row();
        a.actor_kind = "access_keyr".into();
        a.actor_id = "ak_x".into();
        assert_ne!(chain_hash(&a, GENESIS), h);
    }

    fn entry(id: i64, r: AuditRow, prev: &str) -> AuditEntryRow {
        AuditEntryRow {
            id,
            hash: Some(chain_hash(&key(), &r, prev)),
            prev_hash: Some(prev.into()),
            row: r,
        }
    }

    #[test]
    fn links_are_checked() {
        let k = key();
        let check_link = |e: &AuditEntryRow, prev: &str, started: bool| {
            check_link(e, prev, started, |r, p| chain_hash(&k, r, p))
        };
        let a = entry(1, row(), GENESIS);
        let ha = a.hash.clone().unwrap();
        assert!(matches!(check_link(&a, GENESIS, false), Link::Good(h) if h == ha));
        let b = entry(2, row(), &ha);
        assert!(matches!(check_link(&b, &ha, true), Link::Good(_)));
        // skipped entry: b presented right after genesis
        assert!(matches!(check_link(&b, GENESIS, true), Link::Bad(_)));
        // edited contents
        let mut edited = b.clone();
        edited.row.outcome = "denied".into();
        assert!(matches!(check_link(&edited, &ha, true), Link::Bad(r) if r.contains("edited")));
        // rows from before the chain, and hashes removed once it started
        let mut legacy = b.clone();
        legacy.prev_hash = None;
        legacy.hash = None;
        assert!(matches!(check_link(&legacy, GENESIS, false), Link::Legacy));
        assert!(matches!(check_link(&legacy, &ha, true), Link::Bad(_)));
    }
}
