//! The one-time rewrites of data at rest: each runs once (its marker claimed in `settings`), and
//! the audit re-link moves the chain head with it.

use rampart_store::at_rest::{PRODUCT_SECRET, SEALED_COLUMNS};
use rampart_store::*;

pub(crate) async fn suite(s: Store) {
    s.insert_product(&crate::product("ar1")).await.unwrap();
    s.set_product_secret("ar1", &[0xA1]).await.unwrap();
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

    let r = AuditRow {
        action: "ar.test".into(),
        ..Default::default()
    };
    s.append_audit(&r, |p| format!("{p}x")).await.unwrap();
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
