//! Erasure: a device or a user removed with everything that refers to it, other rows untouched,
//! journalled reports included; erasing what is not there answers `None`.

use crate::accounts::with_users;
use crate::{devices_of, report};
use rampart_store::*;

/// Devices `dev_a`, `dev_b` owned by `u1`; `dev_a` shared with `u3` (accepted), with two reports
/// (one compacted into the history, one still journalled on SQLite), a command and a bind token.
async fn with_a_used_device(s: &Store) {
    devices_of(s, "accpk", &[("dev_a", "hw-dev_a"), ("dev_b", "hw-dev_b")]).await;
    with_users(s).await;
    for did in ["dev_a", "dev_b"] {
        s.insert_binding(did, "u1", "owner", None, 1).await.unwrap();
    }
    let share = ShareRow {
        share_id: "sh1".into(),
        did: "dev_a".into(),
        owner_id: "u1".into(),
        invitee_id: "u3".into(),
        role: "guest".into(),
        status: "pending".into(),
        created_at: 5,
        accepted_at: None,
    };
    s.insert_share(&share).await.unwrap();
    assert!(s.accept_share(&share, 6).await.unwrap());
    s.record_reports(&[
        report("dev_a", 10, r#"{"t":1}"#),
        report("dev_b", 10, r#"{"t":2}"#),
    ])
    .await
    .unwrap();
    s.compact_reports().await.unwrap();
    s.record_reports(&[report("dev_a", 11, r#"{"t":3}"#)])
        .await
        .unwrap();
    s.insert_command(
        &CommandRow {
            did: "dev_a".into(),
            id: "c1".into(),
            created_at: 1,
            updated_at: 1,
            status: "sent".into(),
            expires_at: i64::MAX / 2,
            detail: None,
        },
        0,
    )
    .await
    .unwrap();
    s.insert_bind_token(&BindTokenRow {
        token_hash: "h1".into(),
        did: "dev_a".into(),
        created_by: "u1".into(),
        expires_at: i64::MAX / 2,
        created_at: 1,
    })
    .await
    .unwrap();
}

async fn erasing_a_device_removes_what_refers_to_it(s: Store) {
    with_a_used_device(&s).await;
    let erased = s.erase_device("dev_a").await.unwrap().unwrap();
    assert_eq!(
        (
            erased.history,
            erased.bindings,
            erased.shares,
            erased.commands
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(erased.other, 1, "the bind token");
    assert!(s.get_device("dev_a").await.unwrap().is_none());
    assert!(s
        .history("dev_a", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s.get_command("dev_a", "c1").await.unwrap().is_none());
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    // A compaction after the erasure brings nothing back.
    s.compact_reports().await.unwrap();
    assert!(s.get_device("dev_a").await.unwrap().is_none());
    assert!(s
        .history("dev_a", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    // The other device is untouched.
    assert_eq!(
        s.history("dev_b", None, 0, i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.binding_role("dev_b", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(s.erase_device("dev_a").await.unwrap(), None);
}

async fn erasing_a_user_removes_their_account_bindings_and_shares(s: Store) {
    with_a_used_device(&s).await;
    s.put_code(&CodeRow {
        recipient: "a@x.io".into(),
        purpose: "reset".into(),
        code_hash: "ch".into(),
        expires_at: i64::MAX / 2,
        attempts: 0,
        created_at: 1,
    })
    .await
    .unwrap();
    let erased = s.erase_user("u1").await.unwrap().unwrap();
    // u1's two owner bindings and u3's guest binding through u1's share.
    assert_eq!((erased.bindings, erased.shares, erased.codes), (3, 1, 1));
    assert!(s.get_user("u1").await.unwrap().is_none());
    assert!(s.find_user(Some("a@x.io"), None).await.unwrap().is_none());
    assert!(s.get_code("a@x.io", "reset").await.unwrap().is_none());
    assert_eq!(s.device_owner("dev_a").await.unwrap(), None);
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    // Devices and other users stay.
    assert!(s.get_device("dev_a").await.unwrap().is_some());
    assert!(s.get_user("u3").await.unwrap().is_some());
    assert_eq!(s.erase_user("u1").await.unwrap(), None);
}

async fn a_users_records_are_read_for_their_export(s: Store) {
    with_a_used_device(&s).await;
    s.create_session(
        "f1",
        "u1",
        "app1",
        ("ah", i64::MAX / 2),
        ("rh", i64::MAX / 2),
        7,
    )
    .await
    .unwrap();
    let r = s.user_records("u1").await.unwrap().unwrap();
    assert_eq!(r.user.email.as_deref(), Some("a@x.io"));
    assert_eq!(
        r.bindings
            .iter()
            .map(|b| b.did.as_str())
            .collect::<Vec<_>>(),
        ["dev_a", "dev_b"]
    );
    assert_eq!(r.shares.len(), 1);
    assert_eq!(
        r.sessions,
        vec![SessionSummaryRow {
            family_id: "f1".into(),
            app_id: "app1".into(),
            revoked: false,
            created_at: 7,
        }]
    );
    assert!(r.grants.is_empty() && r.identity_links.is_empty());
    assert_eq!(s.session_started_at("f1").await.unwrap(), Some(7));
    assert_eq!(s.session_started_at("nope").await.unwrap(), None);
    // The guest sees the share too, from the other side.
    let g = s.user_records("u3").await.unwrap().unwrap();
    assert_eq!((g.bindings.len(), g.shares.len()), (1, 1));
    assert!(s.user_records("nobody").await.unwrap().is_none());
}

async fn erasing_a_product_removes_its_devices_and_its_own_rows(s: Store) {
    with_a_used_device(&s).await;
    s.insert_factory_batch("b1", "accpk", &[("s1".to_string(), vec![1u8])], 1)
        .await
        .unwrap();
    devices_of(&s, "otherpk", &[("dev_c", "hw-dev_c")]).await;
    s.insert_binding("dev_c", "u1", "owner", None, 1)
        .await
        .unwrap();
    assert_eq!(s.disable_product_devices("accpk").await.unwrap(), 2);
    assert_eq!(
        s.product_device_ids("accpk").await.unwrap(),
        ["dev_a", "dev_b"]
    );
    let e = s.erase_product("accpk").await.unwrap().unwrap();
    assert_eq!((e.devices, e.history, e.bindings), (2, 3, 4), "{e:?}");
    assert_eq!((e.factory, e.firmware, e.campaigns), (2, 0, 0), "{e:?}");
    assert!(s.get_product("accpk").await.unwrap().is_none());
    assert!(s.get_device("dev_a").await.unwrap().is_none());
    assert!(s.get_factory_identity("s1").await.unwrap().is_none());
    s.compact_reports().await.unwrap();
    assert!(s
        .history("dev_a", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    // The other product and its device are untouched.
    assert!(s.get_device("dev_c").await.unwrap().is_some());
    assert_eq!(
        s.binding_role("dev_c", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(s.erase_product("accpk").await.unwrap(), None);
}

async fn an_enterprise_or_a_developer_is_erased_once_its_products_are_gone(s: Store) {
    crate::developers::with_owned_products(&s).await;
    assert_eq!(
        s.enterprise_product_keys("ent_1").await.unwrap(),
        ["pk_ent"]
    );
    assert_eq!(
        s.developer_product_keys("dev_b").await.unwrap(),
        ["pk_dev_b"]
    );
    assert!(matches!(
        s.erase_enterprise("ent_1").await,
        Err(StoreError::Conflict)
    ));
    s.erase_product("pk_ent").await.unwrap().unwrap();
    let e = s.erase_enterprise("ent_1").await.unwrap().unwrap();
    assert_eq!((e.members, e.invites), (2, 0), "{e:?}");
    assert!(s.get_enterprise("ent_1").await.unwrap().is_none());
    assert_eq!(s.erase_enterprise("ent_1").await.unwrap(), None);
    assert!(matches!(
        s.erase_developer("dev_b").await,
        Err(StoreError::Conflict)
    ));
    s.erase_product("pk_dev_b").await.unwrap().unwrap();
    let d = s.erase_developer("dev_b").await.unwrap().unwrap();
    assert_eq!(d.memberships, 0, "gone with the enterprise: {d:?}");
    assert!(s.get_developer("dev_b").await.unwrap().is_none());
    assert!(s.get_developer("dev_a").await.unwrap().is_some());
    assert!(s.get_product("pk_op").await.unwrap().is_some());
    assert_eq!(s.erase_developer("dev_b").await.unwrap(), None);
}

store_cases! {
    an_enterprise_or_a_developer_is_erased_once_its_products_are_gone,
    erasing_a_product_removes_its_devices_and_its_own_rows,
    a_users_records_are_read_for_their_export,
    erasing_a_device_removes_what_refers_to_it,
    erasing_a_user_removes_their_account_bindings_and_shares,
}
