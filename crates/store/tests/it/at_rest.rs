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

/// Shares offered to an address with no account, then claimed by the account made for it.
pub(crate) async fn invitations(s: Store) {
    s.insert_product(&crate::product("invpk")).await.unwrap();
    s.insert_device(&crate::device("invd1", "invpk", "invhw1"))
        .await
        .unwrap();
    let owner = UserRow {
        user_id: "u_inv_owner".into(),
        email: Some("inv-owner@x.io".into()),
        phone: None,
        password_hash: "$argon2id$x".into(),
        active: true,
        app_id: "app1".into(),
        created_at: 1,
        failed_count: 0,
        first_failed_at: 0,
        locked_until: 0,
        lockouts: 0,
    };
    s.insert_user(&owner).await.unwrap();
    let inv = ShareInvitationRow {
        share_id: "sh_inv1".into(),
        did: "invd1".into(),
        owner_id: owner.user_id.clone(),
        email: Some("new@x.io".into()),
        phone: None,
        role: "member".into(),
        created_at: 5,
    };
    s.insert_share_invitation(&inv).await.unwrap();
    assert_eq!(
        s.find_share_invitation("invd1", Some("new@x.io"), None)
            .await
            .unwrap(),
        Some(inv.clone())
    );
    assert!(s
        .find_share_invitation("invd1", None, Some("+15550000"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.list_share_invitations_of_device("invd1").await.unwrap(),
        vec![inv.clone()]
    );
    let newcomer = UserRow {
        user_id: "u_inv_new".into(),
        email: Some("new@x.io".into()),
        ..owner.clone()
    };
    s.insert_user(&newcomer).await.unwrap();
    let claimed = s
        .claim_share_invitations("u_inv_new", Some("new@x.io"), None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].share_id.as_str(), claimed[0].status.as_str()),
        ("sh_inv1", "pending")
    );
    assert_eq!(
        s.get_share("sh_inv1").await.unwrap(),
        Some(claimed[0].clone())
    );
    assert!(s
        .list_share_invitations_of_device("invd1")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_share_invitations("u_inv_new", Some("new@x.io"), None)
        .await
        .unwrap()
        .is_empty());
    // revoked before anyone signs up
    s.insert_share_invitation(&ShareInvitationRow {
        share_id: "sh_inv2".into(),
        phone: Some("+15550001".into()),
        email: None,
        ..inv
    })
    .await
    .unwrap();
    assert!(s.delete_share_invitation("invd1", "sh_inv2").await.unwrap());
    assert!(!s.delete_share_invitation("invd1", "sh_inv2").await.unwrap());
}
