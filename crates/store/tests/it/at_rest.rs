//! The one-time rewrites of data at rest: each runs once (its marker claimed in `settings`),
//! visits every sealed column, and the audit re-link moves the chain head with it.

use crate::{app, device, enterprise, product};
use rampart_store::at_rest::{PRODUCT_SECRET, SEALED_COLUMNS};
use rampart_store::*;

/// A value in every sealed column; only product `ar1`'s secret is `[0xA1]`.
async fn with_every_sealed_column(s: &Store) {
    s.insert_product(&product("ar1")).await.unwrap();
    s.set_product_secret("ar1", &[0xA1]).await.unwrap();
    s.insert_factory_batch("arb", "ar1", &[("ars1".to_string(), vec![0xB1])], 1)
        .await
        .unwrap();
    s.insert_device(&device("ard1", "ar1", "arhw1"))
        .await
        .unwrap();
    s.insert_app(&app("arapp", "[]")).await.unwrap();
    s.insert_oidc_state(&OidcStateRow {
        state_hash: "arst".into(),
        provider: "google".into(),
        app_id: "arapp".into(),
        nonce: "n".into(),
        verifier_enc: vec![1, 2, 3],
        redirect_uri: "https://r.example/cb".into(),
        expires_at: 1_000,
        created_at: 1,
        browser_hash: "bh".into(),
    })
    .await
    .unwrap();
    s.insert_developer(&crate::developers::developer("ardev", "ar@example.com"))
        .await
        .unwrap();
    s.set_developer_totp_pending("ardev", &[7, 7])
        .await
        .unwrap();
    s.insert_enterprise_without_owner(&enterprise("arent"))
        .await
        .unwrap();
    s.insert_access_key(&crate::access_keys::key("arak", "arent"), &[])
        .await
        .unwrap();
    assert!(s
        .rotate_access_key("arent", "arak", &[1, 1], &[3, 3], &[2, 2], 500)
        .await
        .unwrap());
    s.insert_webhook(&crate::webhooks::hook("arwh", "arent", 1))
        .await
        .unwrap();
    s.insert_factory_credential(&crate::factory::credential("arfc", "ar1", 10))
        .await
        .unwrap();
    s.insert_ota_key(&OtaKeyRow {
        product_key: "ar1".into(),
        public_key: vec![0; 32],
        private_enc: vec![4, 4],
        created_at: 1,
    })
    .await
    .unwrap();
}

async fn sealed_values_are_rewritten_once(s: Store) {
    with_every_sealed_column(&s).await;
    let mut seen = Vec::new();
    let done = s
        .rewrite_sealed_once("test.sealed", 1, |c, id, v| {
            seen.push((c.table, c.column, id.to_owned()));
            (v == [0xA1]).then(|| vec![0xA2, id.len() as u8])
        })
        .await
        .unwrap();
    assert!(done.ran);
    assert_eq!(done.rows, 1);
    assert!(seen.contains(&(
        PRODUCT_SECRET.table,
        PRODUCT_SECRET.column,
        "ar1".to_owned()
    )));
    assert!(seen.iter().all(|(t, c, _)| SEALED_COLUMNS
        .iter()
        .any(|s| s.table == *t && s.column == *c)));
    for col in SEALED_COLUMNS {
        assert!(
            seen.iter()
                .any(|(t, c, _)| *t == col.table && *c == col.column),
            "{}.{} not visited",
            col.table,
            col.column
        );
    }
    assert_eq!(
        s.get_product("ar1").await.unwrap().unwrap().secret_enc,
        vec![0xA2, 3]
    );
    let again = s
        .rewrite_sealed_once("test.sealed", 2, |_, _, _| Some(vec![0]))
        .await
        .unwrap();
    assert!(!again.ran);
    assert_eq!(
        s.get_product("ar1").await.unwrap().unwrap().secret_enc,
        vec![0xA2, 3]
    );
}

async fn the_audit_chain_is_relinked_once(s: Store) {
    let r = AuditRow {
        action: "ar.test".into(),
        ..Default::default()
    };
    s.append_audit(&r, |p| format!("{p}x")).await.unwrap();
    s.append_audit(&r, |p| format!("{p}y")).await.unwrap();
    let head = s.audit_chain_head().await.unwrap();
    let done = s
        .relink_audit_once("test.audit", 1, "g", |e, prev| {
            e.hash.as_ref().map(|_| format!("{prev}-{}", e.id))
        })
        .await
        .unwrap();
    assert!(done.ran && done.rows as i64 == head.entries, "{done:?}");
    let after = s.audit_chain_head().await.unwrap();
    assert_eq!(after.entries, head.entries);
    let all = s.audit_entries_after(0, 10_000).await.unwrap();
    let chained: Vec<_> = all.iter().filter(|e| e.hash.is_some()).collect();
    assert_eq!(chained[0].prev_hash.as_deref(), Some("g"));
    assert_eq!(
        chained.last().unwrap().hash.as_deref(),
        Some(after.last_hash.as_str())
    );
    assert!(
        !s.relink_audit_once("test.audit", 2, "g", |_, _| Some("z".into()))
            .await
            .unwrap()
            .ran
    );
}

store_cases! {
    sealed_values_are_rewritten_once,
    the_audit_chain_is_relinked_once,
}
