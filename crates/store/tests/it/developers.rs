//! Developers: accounts, lock state, sessions, TOTP steps and recovery codes, product ownership
//! and the products and devices a developer may read.

use rampart_store::*;

pub(crate) fn developer(id: &str, email: &str) -> DeveloperRow {
    DeveloperRow {
        developer_id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$x".into(),
        active: true,
        suspended: false,
        created_at: 10,
        failed_count: 0,
        first_failed_at: 0,
        locked_until: 0,
        lockouts: 0,
        totp_secret_enc: None,
        totp_enabled: false,
        totp_last_step: 0,
    }
}

/// A product owned by `enterprise` (or by nobody in particular).
pub(crate) fn owned_product(pk: &str, enterprise: Option<&str>) -> ProductRow {
    ProductRow {
        product_key: pk.into(),
        name: "p".into(),
        secret_enc: vec![1],
        identity: rampart_store::IdentityFlags {
            dynamic_registration: true,
            ..Default::default()
        },
        report_limit_per_min: 60,
        model: "[]".into(),
        enterprise_id: enterprise.map(Into::into),
        created_at: 1,
    }
}

/// Developers `dev_a` (a@example.com) and `dev_b` (b@example.com).
pub(crate) async fn with_developers(s: &Store) {
    s.insert_developer(&developer("dev_a", "a@example.com"))
        .await
        .unwrap();
    s.insert_developer(&developer("dev_b", "b@example.com"))
        .await
        .unwrap();
}

const LOCK: LockState = LockState {
    failed_count: 2,
    first_failed_at: 5,
    locked_until: 0,
    lockouts: 0,
};

async fn developer_emails_are_unique_and_listed(s: Store) {
    with_developers(&s).await;
    assert!(matches!(
        s.insert_developer(&developer("dev_c", "a@example.com"))
            .await,
        Err(StoreError::Conflict)
    ));
    let (page, n) = s.list_developers(None, 0, 10).await.unwrap();
    assert_eq!((page.len(), n), (2, 2));
    let (page, n) = s
        .list_developers(Some("b@example.com"), 0, 10)
        .await
        .unwrap();
    assert_eq!((page[0].developer_id.as_str(), n), ("dev_b", 1));
    let a = s.find_developer("a@example.com").await.unwrap().unwrap();
    assert_eq!(a, developer("dev_a", "a@example.com"));
}

async fn a_developers_lock_state_is_kept(s: Store) {
    with_developers(&s).await;
    s.set_developer_lock_state("dev_a", LOCK).await.unwrap();
    assert_eq!(
        s.get_developer("dev_a")
            .await
            .unwrap()
            .unwrap()
            .lock_state(),
        LOCK
    );
}

/// Concurrent failed logins of a developer: every claim counted, none lost.
async fn concurrent_failed_developer_logins_are_all_counted(s: Store) {
    with_developers(&s).await;
    s.set_developer_lock_state("dev_a", LOCK).await.unwrap();
    let claims: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.update_developer_lock_state("dev_a", |mut l| {
                    l.failed_count += 1;
                    Some(l)
                })
                .await
                .unwrap()
                .is_some()
            })
        })
        .collect();
    for c in claims {
        assert!(c.await.unwrap());
    }
    let after = s
        .get_developer("dev_a")
        .await
        .unwrap()
        .unwrap()
        .lock_state();
    assert_eq!(after.failed_count, 82);
}

async fn a_new_developer_password_clears_the_failed_count(s: Store) {
    with_developers(&s).await;
    s.set_developer_lock_state("dev_a", LOCK).await.unwrap();
    s.set_developer_password("dev_a", "$argon2id$y")
        .await
        .unwrap();
    let a = s.get_developer("dev_a").await.unwrap().unwrap();
    assert_eq!(
        (a.password_hash.as_str(), a.failed_count),
        ("$argon2id$y", 0)
    );
}

async fn a_developer_session_rotates_and_reports_reuse(s: Store) {
    with_developers(&s).await;
    s.create_developer_session("df1", "dev_a", ("acc1", 1000), ("ref1", 5000), 1)
        .await
        .unwrap();
    let live = s
        .developer_access_session("acc1", 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (live.developer_id.as_str(), live.family_id.as_str()),
        ("dev_a", "df1")
    );
    assert!(s
        .developer_access_session("acc1", 1000)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .developer_access_session("ref1", 10)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        s.use_developer_refresh("ref1", 10).await.unwrap(),
        DeveloperRefresh::Rotated(_)
    ));
    assert!(matches!(
        s.use_developer_refresh("ref1", 11).await.unwrap(),
        DeveloperRefresh::Reused(_)
    ));
}

async fn a_suspended_developers_tokens_stop_until_reinstated(s: Store) {
    with_developers(&s).await;
    s.create_developer_session("df1", "dev_a", ("acc1", 1000), ("ref1", 5000), 1)
        .await
        .unwrap();
    s.add_developer_tokens("df1", ("acc2", 1000), ("ref2", 5000), 12)
        .await
        .unwrap();
    assert!(s.set_developer_suspended("dev_a", true).await.unwrap());
    assert!(s
        .developer_access_session("acc2", 13)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.use_developer_refresh("ref2", 13).await.unwrap(),
        DeveloperRefresh::Invalid
    );
    assert!(s.set_developer_suspended("dev_a", false).await.unwrap());
    assert!(!s.set_developer_suspended("nobody", true).await.unwrap());
    assert!(s
        .developer_access_session("acc2", 13)
        .await
        .unwrap()
        .is_some());
}

async fn a_developers_families_are_revoked_all_or_all_but_one(s: Store) {
    with_developers(&s).await;
    s.create_developer_session("df1", "dev_a", ("acc2", 1000), ("ref2", 5000), 1)
        .await
        .unwrap();
    assert_eq!(s.revoke_developer_families("dev_a").await.unwrap(), 1);
    assert!(s
        .developer_access_session("acc2", 13)
        .await
        .unwrap()
        .is_none());
    s.create_developer_session("df2", "dev_a", ("acc3", 1000), ("ref3", 5000), 14)
        .await
        .unwrap();
    s.create_developer_session("df3", "dev_a", ("acc4", 1000), ("ref4", 5000), 14)
        .await
        .unwrap();
    assert_eq!(
        s.revoke_other_developer_families("dev_a", "df3")
            .await
            .unwrap(),
        1
    );
    assert!(s
        .developer_access_session("acc3", 15)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .developer_access_session("acc4", 15)
        .await
        .unwrap()
        .is_some());
}

async fn expired_developer_tokens_are_purged(s: Store) {
    with_developers(&s).await;
    s.create_developer_session("df1", "dev_a", ("acc1", 1000), ("ref1", 5000), 1)
        .await
        .unwrap();
    s.create_developer_session("df2", "dev_a", ("acc3", 1000), ("ref3", 5000), 14)
        .await
        .unwrap();
    assert!(s.purge_developer_tokens(2000).await.unwrap() >= 2);
    assert!(s
        .developer_access_session("acc1", 10)
        .await
        .unwrap()
        .is_none());
}

/// `dev_a` with TOTP enrolled (secret [7, 7]), step 100 taken, recovery codes h1 and h2.
async fn with_totp(s: &Store) {
    with_developers(s).await;
    s.set_developer_totp_pending("dev_a", &[7, 7])
        .await
        .unwrap();
    assert!(s.use_totp_step("dev_a", 100).await.unwrap());
    s.enable_developer_totp("dev_a", &["h1".into(), "h2".into()], 20)
        .await
        .unwrap();
}

/// A TOTP step is taken once (nor an older one after it); recovery codes are single use.
async fn a_totp_step_is_taken_once_and_recovery_codes_are_single_use(s: Store) {
    with_developers(&s).await;
    s.set_developer_totp_pending("dev_a", &[7, 7])
        .await
        .unwrap();
    assert!(s.use_totp_step("dev_a", 100).await.unwrap());
    assert!(!s.use_totp_step("dev_a", 100).await.unwrap());
    assert!(!s.use_totp_step("dev_a", 99).await.unwrap());
    s.enable_developer_totp("dev_a", &["h1".into(), "h2".into()], 20)
        .await
        .unwrap();
    let a = s.get_developer("dev_a").await.unwrap().unwrap();
    assert_eq!(
        (a.totp_enabled, a.totp_secret_enc, a.totp_last_step),
        (true, Some(vec![7, 7]), 100)
    );
    assert!(s.use_recovery_code("dev_a", "h1").await.unwrap());
    assert!(!s.use_recovery_code("dev_a", "h1").await.unwrap());
    assert!(!s.use_recovery_code("dev_b", "h2").await.unwrap());
    assert_eq!(s.count_recovery_codes("dev_a").await.unwrap(), 1);
}

/// One TOTP step presented by 80 concurrent logins: accepted exactly once.
async fn a_totp_step_replayed_concurrently_is_accepted_once(s: Store) {
    with_totp(&s).await;
    let uses: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.use_totp_step("dev_a", 101).await.unwrap() })
        })
        .collect();
    let mut accepted = 0;
    for u in uses {
        accepted += usize::from(u.await.unwrap());
    }
    assert_eq!(accepted, 1, "a TOTP step replayed concurrently");
}

async fn disabling_totp_forgets_the_secret_and_the_recovery_codes(s: Store) {
    with_totp(&s).await;
    s.disable_developer_totp("dev_a").await.unwrap();
    let a = s.get_developer("dev_a").await.unwrap().unwrap();
    assert_eq!((a.totp_enabled, a.totp_secret_enc), (false, None));
    assert_eq!(s.count_recovery_codes("dev_a").await.unwrap(), 0);
}

/// `dev_a` owns enterprise `ent_1` and `dev_b` is a member; products `pk_dev_b` (dev_b's own),
/// `pk_ent` (ent_1's, with device `ddev1`) and `pk_op` (the operator's).
pub(crate) async fn with_owned_products(s: &Store) {
    crate::enterprises::with_enterprise(s).await;
    s.insert_invite(&crate::enterprises::invite("inv_1", "b@example.com"))
        .await
        .unwrap();
    assert!(s.accept_invite("inv_1", "dev_b", 32).await.unwrap());
    s.insert_owned_product(&owned_product("pk_dev_b", None), Some("dev_b"))
        .await
        .unwrap();
    s.insert_owned_product(&owned_product("pk_ent", Some("ent_1")), None)
        .await
        .unwrap();
    s.insert_product(&owned_product("pk_op", None))
        .await
        .unwrap();
    s.insert_device(&crate::device("ddev1", "pk_ent", "hw-ddev1"))
        .await
        .unwrap();
}

/// Products: personal, enterprise, operator.
async fn a_product_is_owned_by_a_developer_an_enterprise_or_the_operator(s: Store) {
    with_owned_products(&s).await;
    assert_eq!(
        s.product_owner("pk_dev_b").await.unwrap().unwrap(),
        ProductOwnerRow {
            enterprise_id: None,
            owner_developer_id: Some("dev_b".into())
        }
    );
    assert_eq!(
        s.product_owner("pk_ent").await.unwrap().unwrap(),
        ProductOwnerRow {
            enterprise_id: Some("ent_1".into()),
            owner_developer_id: None
        }
    );
    assert_eq!(
        s.product_owner("pk_op").await.unwrap().unwrap(),
        ProductOwnerRow::default()
    );
    assert!(s.product_owner("missing").await.unwrap().is_none());
}

/// Readable lists follow membership and suspension.
async fn a_developer_reads_what_live_memberships_reach(s: Store) {
    with_owned_products(&s).await;
    let keys = |rows: Vec<ProductRow>| rows.into_iter().map(|r| r.product_key).collect::<Vec<_>>();
    let (rows, n) = s.list_developer_products("dev_a", 0, 10).await.unwrap();
    assert_eq!((keys(rows), n), (vec!["pk_ent".to_string()], 1));
    let (rows, n) = s.list_developer_products("dev_b", 0, 10).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(keys(rows).len(), 2);
    let (devs, n) = s
        .list_developer_devices("dev_a", None, 0, 10)
        .await
        .unwrap();
    assert_eq!((devs.len(), n), (1, 1));
    assert!(s.set_enterprise_suspended("ent_1", true).await.unwrap());
    let (_, n) = s.list_developer_products("dev_a", 0, 10).await.unwrap();
    assert_eq!(n, 0);
    let (_, n) = s
        .list_developer_devices("dev_a", None, 0, 10)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(!s.set_enterprise_suspended("nope", true).await.unwrap());
}

async fn a_products_secret_is_replaced(s: Store) {
    with_owned_products(&s).await;
    assert!(s.set_product_secret("pk_ent", &[5, 5]).await.unwrap());
    assert_eq!(
        s.get_product("pk_ent").await.unwrap().unwrap().secret_enc,
        vec![5, 5]
    );
    assert!(!s.set_product_secret("missing", &[5]).await.unwrap());
}

store_cases! {
    developer_emails_are_unique_and_listed,
    a_developers_lock_state_is_kept,
    concurrent_failed_developer_logins_are_all_counted,
    a_new_developer_password_clears_the_failed_count,
    a_developer_session_rotates_and_reports_reuse,
    a_suspended_developers_tokens_stop_until_reinstated,
    a_developers_families_are_revoked_all_or_all_but_one,
    expired_developer_tokens_are_purged,
    a_totp_step_is_taken_once_and_recovery_codes_are_single_use,
    a_totp_step_replayed_concurrently_is_accepted_once,
    disabling_totp_forgets_the_secret_and_the_recovery_codes,
    a_product_is_owned_by_a_developer_an_enterprise_or_the_operator,
    a_developer_reads_what_live_memberships_reach,
    a_products_secret_is_replaced,
}
