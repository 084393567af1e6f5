//! One-time upgrades of data at rest, run at start-up before anything reads it: sealed values
//! bound to their place, and the audit chain's links keyed. Each records itself in the store's
//! `settings` so it runs once, also when several processes start together.
//!
//! A marker in the database alone would let whoever can write the database undo it: delete the
//! marker, rebuild the chain with plain SHA-256, and the next start would re-link the forgery.
//! So the upgrade also leaves a file in the data directory (beside the master key); where that
//! file exists, nothing is ever rewritten again, and a missing database marker is reported.

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::secret::Place;
use crate::{Core, Error, Result};
use std::path::Path;

/// The `settings` key recording that every sealed value is bound to its place.
const SEALS_BOUND_MARKER: &str = action::AT_REST_SEALS_BOUND;

/// The file, in the data directory, recording that this directory's store was upgraded.
pub const UPGRADED_FILE: &str = "at-rest-v2";

impl Core {
    /// Bind sealed values written before seals carried their place, and key the audit chain,
    /// unless `data_dir` records that it was done.
    pub async fn upgrade_at_rest(&self, data_dir: &Path) -> Result<()> {
        let file = data_dir.join(UPGRADED_FILE);
        if file.exists() {
            return self.check_upgrade_markers().await;
        }
        self.bind_sealed_values().await?;
        self.key_audit_chain().await?;
        match crate::secret::write_private(&file, b"sealed values bound; audit chain keyed\n") {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(Error::Internal(format!("{}: {e}", file.display())))
            }
            _ => Ok(()),
        }
    }

    /// After the upgrade: the database's markers must still be there. A missing one is put back
    /// (so the rewrite never runs) and reported: someone who can write the database removed it.
    async fn check_upgrade_markers(&self) -> Result<()> {
        for marker in [SEALS_BOUND_MARKER, crate::audit::AUDIT_KEYED_MARKER] {
            if self
                .store()
                .init_setting(marker, &self.now_ms().to_string())
                .await?
            {
                tracing::error!(
                    marker,
                    "a marker of the at-rest upgrade was missing from the database; not rewriting"
                );
                let system = Actor {
                    kind: "system",
                    id: "start-up".into(),
                };
                self.audit(
                    AuditEvent::new(&system, action::AT_REST_MARKER_MISSING, "restored")
                        .detail(marker),
                )
                .await;
            }
        }
        Ok(())
    }

    async fn bind_sealed_values(&self) -> Result<()> {
        let key = self.key();
        let done = self
            .store()
            .rewrite_sealed_once(SEALS_BOUND_MARKER, self.now_ms(), |col, id, sealed| {
                key.bind_legacy(Place::new(*col, id), sealed)
            })
            .await?;
        if done.ran && (done.rows > 0 || done.skipped > 0) {
            tracing::info!(
                bound = done.rows,
                left = done.skipped,
                "sealed values bound to their table, column and row"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::legacy_chain_hash;
    use crate::secret::MasterKey;
    use rampart_store::at_rest as col;
    use rampart_store::AuditRow;

    fn entry(action: &str) -> AuditRow {
        AuditRow {
            ts: 1_700_000_000_000,
            actor_kind: "admin".into(),
            actor_id: "bootstrap".into(),
            action: action.into(),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn legacy_seals_and_chain_are_upgraded_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes(&[3; 32]);
        let dids = ["d1".to_owned(), "d2".to_owned()];
        let store = crate::test_support::store_with_devices(dir.path(), "[]", &dids, |i| {
            key.seal_unbound(format!("secret-{i}").as_bytes())
        })
        .await;
        store
            .set_product_secret("pk", &key.seal_unbound(b"product"))
            .await
            .unwrap();
        // an old chain: plain SHA-256 links
        for a in ["one", "two", "three"] {
            let r = entry(a);
            store
                .append_audit(&r, |prev| legacy_chain_hash(&r, prev))
                .await
                .unwrap();
        }
        let core = Core::new(store, MasterKey::from_bytes(&[3; 32]), Default::default());
        assert!(core.product_secret("pk").await.is_err(), "unbound before");

        core.upgrade_at_rest(dir.path()).await.unwrap();
        assert!(dir.path().join(UPGRADED_FILE).exists());
        assert_eq!(
            core.product_secret("pk").await.unwrap().unwrap().expose(),
            "product"
        );
        let d2 = core.store().get_device("d2").await.unwrap().unwrap();
        let open = |did: &str| {
            core.key()
                .open(Place::new(col::DEVICE_SECRET, did), &d2.secret_enc)
        };
        assert_eq!(&open("d2").unwrap()[..], b"secret-1");
        assert!(open("d1").is_err(), "bound to its row");
        let report = core.verify_audit_chain().await.unwrap();
        assert!(report.first_bad.is_none(), "{report:?}");
        // the three old entries and the record of the re-link
        assert_eq!(report.entries, 4);
        let last = core
            .store()
            .list_audit(Some("audit.chain_keyed"), 1)
            .await
            .unwrap();
        assert_eq!(last[0].outcome, "ok", "{last:?}");

        // a second start rewrites nothing: the values stay as they are
        core.upgrade_at_rest(dir.path()).await.unwrap();
        let again = core.store().get_device("d2").await.unwrap().unwrap();
        assert_eq!(again.secret_enc, d2.secret_enc);
        assert_eq!(core.verify_audit_chain().await.unwrap().entries, 4);
    }

    #[tokio::test]
    async fn a_broken_old_chain_is_re_linked_and_the_break_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::test_support::store_with_devices(dir.path(), "[]", &[], |_| vec![]).await;
        for a in ["one", "two"] {
            let r = entry(a);
            store
                .append_audit(&r, |prev| legacy_chain_hash(&r, prev))
                .await
                .unwrap();
        }
        // the second entry's hash no longer matches: as if edited
        let r = entry("three");
        store.append_audit(&r, |_| "f".repeat(64)).await.unwrap();
        let core = Core::new(store, MasterKey::from_bytes(&[3; 32]), Default::default());
        core.upgrade_at_rest(dir.path()).await.unwrap();
        let rec = core
            .store()
            .list_audit(Some("audit.chain_keyed"), 1)
            .await
            .unwrap();
        assert_eq!(rec[0].outcome, "old_chain_broken");
        assert!(
            rec[0]
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("broken at entry 3"),
            "{rec:?}"
        );
    }
}
