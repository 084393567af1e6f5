//! Accounts tables: apps, users, codes, token families, bindings, shares, bind tokens.

use rampart_store::*;

fn user(id: &str, email: Option<&str>, phone: Option<&str>) -> UserRow {
    UserRow {
        user_id: id.into(),
        email: email.map(Into::into),
        phone: phone.map(Into::into),
        password_hash: "$argon2id$x".into(),
        active: false,
        app_id: "app1".into(),
        created_at: 10,
        failed_count: 0,
        first_failed_at: 0,
        locked_until: 0,
        lockouts: 0,
    }
}

pub(crate) async fn suite(s: Store) {
    s.insert_product(&ProductRow {
        product_key: "accpk".into(),
        name: "acc".into(),
        secret_enc: vec![1],
        dynamic_registration: true,
        allowlist: false,
        report_limit_per_min: 60,
        model: "[]".into(),
        enterprise_id: None,
        created_at: 1,
    })
    .await
    .unwrap();
    for did in ["dev_a", "dev_b"] {
        s.insert_device(&DeviceRow {
            did: did.into(),
            product_key: "accpk".into(),
            hardware_id: format!("hw-{did}"),
            mode: "product".into(),
            secret_enc: vec![9],
            passcode_enc: vec![8],
            created_at: 5,
            online: false,
            last_seen: None,
            state: "{}".into(),
        })
        .await
        .unwrap();
    }

    // apps
    let app = AppRow {
        app_id: "app1".into(),
        name: "Lamp".into(),
        secret_hash: "h".into(),
        product_keys: "[\"accpk\"]".into(),
        created_at: 1,
    };
    s.insert_app(&app).await.unwrap();
    assert!(matches!(
        s.insert_app(&app).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_app("app1").await.unwrap(), Some(app));
    assert_eq!(s.get_app("nope").await.unwrap(), None);

    // users: e-mail and phone are unique; several users may lack one of them
    s.insert_user(&user("u1", Some("a@x.io"), None))
        .await
        .unwrap();
    s.insert_user(&user("u2", None, Some("+15550001")))
        .await
        .unwrap();
    s.insert_user(&user("u3", Some("c@x.io"), None))
        .await
        .unwrap();
    assert!(matches!(
        s.insert_user(&user("u4", Some("a@x.io"), None)).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        s.insert_user(&user("u5", None, Some("+15550001"))).await,
        Err(StoreError::Conflict)
    ));
    let u = s.find_user(Some("a@x.io"), None).await.unwrap().unwrap();
    assert_eq!((u.user_id.as_str(), u.active), ("u1", false));
    assert_eq!(
        s.find_user(None, Some("+15550001"))
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "u2"
    );
    assert!(s.find_user(None, None).await.unwrap().is_none());
    s.activate_user("u1").await.unwrap();
    let lock = LockState {
        failed_count: 3,
        first_failed_at: 100,
        locked_until: 900,
        lockouts: 2,
    };
    s.set_lock_state("u1", lock).await.unwrap();
    let u = s.get_user("u1").await.unwrap().unwrap();
    assert!(u.active);
    assert_eq!(
        (
            u.failed_count,
            u.first_failed_at,
            u.locked_until,
            u.lockouts
        ),
        (3, 100, 900, 2)
    );
    s.set_password("u1", "$argon2id$new").await.unwrap();
    let u = s.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (u.password_hash.as_str(), u.locked_until),
        ("$argon2id$new", 0)
    );

    // one-time codes: upsert, attempts, delete
    let code = CodeRow {
        recipient: "a@x.io".into(),
        purpose: "activate".into(),
        code_hash: "h1".into(),
        expires_at: 1000,
        attempts: 0,
        created_at: 1,
    };
    s.put_code(&code).await.unwrap();
    let claim = |max: i64, now: i64| s.claim_code_attempt("a@x.io", "activate", max, now);
    assert_eq!(claim(5, 10).await.unwrap().as_deref(), Some("h1"));
    assert_eq!(claim(5, 10).await.unwrap().as_deref(), Some("h1"));
    assert_eq!(claim(2, 10).await.unwrap(), None, "two tries claimed");
    assert_eq!(claim(5, 1000).await.unwrap(), None, "expired");
    let c = s.get_code("a@x.io", "activate").await.unwrap().unwrap();
    assert_eq!(c.attempts, 2);
    s.put_code(&CodeRow {
        code_hash: "h2".into(),
        ..code.clone()
    })
    .await
    .unwrap();
    let c = s.get_code("a@x.io", "activate").await.unwrap().unwrap();
    assert_eq!((c.code_hash.as_str(), c.attempts), ("h2", 0));
    assert!(s
        .get_code("a@x.io", "password_reset")
        .await
        .unwrap()
        .is_none());
    // a code is spent once, and only while it is still the code that was matched
    assert!(!s.take_code("a@x.io", "activate", "h1").await.unwrap());
    assert!(s.take_code("a@x.io", "activate", "h2").await.unwrap());
    assert!(!s.take_code("a@x.io", "activate", "h2").await.unwrap());
    s.put_code(&code).await.unwrap();
    s.delete_code("a@x.io", "activate").await.unwrap();
    assert!(s.get_code("a@x.io", "activate").await.unwrap().is_none());
    assert_eq!(claim(5, 10).await.unwrap(), None, "no code");
    concurrent_code_tries_are_claimed_at_most_five_times(&s).await;
    concurrent_failed_logins_are_all_counted(&s).await;

    // sessions: access lookup, rotation, reuse, revocation
    s.create_session("f1", "u1", "app1", ("acc1", 500), ("ref1", 5000), 1)
        .await
        .unwrap();
    let sess = s.access_session("acc1", 100).await.unwrap().unwrap();
    assert_eq!(
        (
            sess.user_id.as_str(),
            sess.family_id.as_str(),
            sess.app_id.as_str()
        ),
        ("u1", "f1", "app1")
    );
    assert!(
        s.access_session("acc1", 500).await.unwrap().is_none(),
        "expired"
    );
    assert!(
        s.access_session("ref1", 100).await.unwrap().is_none(),
        "kind"
    );
    assert!(
        matches!(s.use_refresh("ref1", 100).await.unwrap(), RefreshUse::Rotated(r) if r.family_id == "f1")
    );
    s.add_tokens("f1", ("acc2", 800), ("ref2", 5000), 100)
        .await
        .unwrap();
    assert!(
        matches!(s.use_refresh("ref1", 101).await.unwrap(), RefreshUse::Reused(r) if r.family_id == "f1")
    );
    assert_eq!(
        s.use_refresh("nope", 101).await.unwrap(),
        RefreshUse::Invalid
    );
    assert!(s.revoke_family("f1").await.unwrap());
    assert!(!s.revoke_family("f1").await.unwrap());
    assert_eq!(
        s.use_refresh("ref2", 102).await.unwrap(),
        RefreshUse::Invalid
    );
    assert!(s.access_session("acc2", 102).await.unwrap().is_none());
    // an expired refresh token is neither rotated nor reported as reuse
    s.create_session("f2", "u1", "app1", ("acc3", 500), ("ref3", 200), 1)
        .await
        .unwrap();
    assert_eq!(
        s.use_refresh("ref3", 300).await.unwrap(),
        RefreshUse::Invalid
    );
    s.create_session("f3", "u1", "app1", ("acc4", 500), ("ref4", 5000), 1)
        .await
        .unwrap();
    assert_eq!(s.revoke_user_families("u1", Some("f3")).await.unwrap(), 1);
    assert!(s.access_session("acc4", 100).await.unwrap().is_some());
    assert_eq!(s.revoke_user_families("u1", None).await.unwrap(), 1);
    assert!(s.access_session("acc4", 100).await.unwrap().is_none());
    assert!(s.purge_tokens(1000).await.unwrap() >= 4);

    // bindings: one owner per device
    s.insert_binding("dev_a", "u1", "owner", None, 1)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_binding("dev_a", "u3", "owner", None, 2).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        s.insert_binding("dev_a", "u1", "member", None, 2).await,
        Err(StoreError::Conflict)
    ));
    s.insert_binding("dev_b", "u1", "owner", None, 3)
        .await
        .unwrap();
    assert_eq!(
        s.device_owner("dev_a").await.unwrap().as_deref(),
        Some("u1")
    );
    assert_eq!(
        s.binding_role("dev_a", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    let (page, total) = s.list_bindings("u1", 0, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(
        (page[0].did.as_str(), page[0].product_key.as_str()),
        ("dev_b", "accpk")
    );

    // shares: pending, accepted (creates the binding), revoked (removes it)
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
    assert_eq!(
        s.find_share("dev_a", "u3").await.unwrap(),
        Some(share.clone())
    );
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    assert!(s.accept_share(&share, 6).await.unwrap());
    assert!(!s.accept_share(&share, 7).await.unwrap(), "only once");
    assert_eq!(
        s.binding_role("dev_a", "u3").await.unwrap().as_deref(),
        Some("guest")
    );
    assert_eq!(s.list_shares_of_device("dev_a").await.unwrap().len(), 1);
    assert!(s.list_shares_of_device("dev_b").await.unwrap().is_empty());
    let (list, total) = s.list_shares_for("u3", 0, 10).await.unwrap();
    assert_eq!((list.len(), total), (1, 1));
    assert_eq!(
        (list[0].status.as_str(), list[0].accepted_at),
        ("accepted", Some(6))
    );
    assert_eq!(
        s.user_device_roles("u3").await.unwrap(),
        vec![("dev_a".to_string(), "guest".to_string())]
    );
    assert!(s.delete_share("sh1").await.unwrap());
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);

    // a member removing their own binding removes the share too
    s.insert_share(&ShareRow {
        share_id: "sh2".into(),
        ..share.clone()
    })
    .await
    .unwrap();
    assert!(s
        .accept_share(
            &ShareRow {
                share_id: "sh2".into(),
                ..share.clone()
            },
            8
        )
        .await
        .unwrap());
    assert!(s.delete_binding("dev_a", "u3").await.unwrap());
    assert!(s.get_share("sh2").await.unwrap().is_none());

    // bind tokens: single use, bound to their device, expire
    let tok = |h: &str, exp| BindTokenRow {
        token_hash: h.into(),
        did: "dev_a".into(),
        created_by: "u1".into(),
        expires_at: exp,
        created_at: 1,
    };
    s.insert_bind_token(&tok("t1", 1000)).await.unwrap();
    s.insert_bind_token(&tok("t2", 1000)).await.unwrap();
    s.insert_bind_token(&tok("t3", 50)).await.unwrap();
    assert!(s
        .take_bind_token("t1", "dev_a", 100)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .take_bind_token("t1", "dev_a", 100)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .take_bind_token("t2", "dev_b", 100)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.take_bind_token("t2", "dev_a", 100)
            .await
            .unwrap()
            .is_none(),
        "consumed by the wrong did"
    );
    assert!(s
        .take_bind_token("t3", "dev_a", 100)
        .await
        .unwrap()
        .is_none());

    // unbinding everyone (owner unbind, factory reset)
    s.insert_share(&ShareRow {
        share_id: "sh3".into(),
        ..share.clone()
    })
    .await
    .unwrap();
    assert!(s
        .accept_share(
            &ShareRow {
                share_id: "sh3".into(),
                ..share
            },
            9
        )
        .await
        .unwrap());
    s.insert_bind_token(&tok("t4", 1000)).await.unwrap();
    let mut users = s.unbind_all("dev_a").await.unwrap();
    users.sort();
    assert_eq!(users, vec!["u1".to_string(), "u3".to_string()]);
    assert_eq!(s.device_owner("dev_a").await.unwrap(), None);
    assert!(s.get_share("sh3").await.unwrap().is_none());
    assert!(s
        .take_bind_token("t4", "dev_a", 100)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.binding_role("dev_b", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
}

/// 80 concurrent tries at one code: the store hands its hash to exactly five of them, so no
/// more than five guesses can ever be compared.
async fn concurrent_code_tries_are_claimed_at_most_five_times(s: &Store) {
    s.put_code(&CodeRow {
        recipient: "race@x.io".into(),
        purpose: "activate".into(),
        code_hash: "hr".into(),
        expires_at: 10_000,
        attempts: 0,
        created_at: 1,
    })
    .await
    .unwrap();
    let tries: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_code_attempt("race@x.io", "activate", 5, 100)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for t in tries {
        if t.await.unwrap().is_some() {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 5, "tries handed the code's hash");
    let c = s.get_code("race@x.io", "activate").await.unwrap().unwrap();
    assert_eq!(c.attempts, 5);
    s.delete_code("race@x.io", "activate").await.unwrap();
}

/// 80 concurrent read-modify-writes of one user's lockout state: each sees the previous one's
/// write (none is lost), for users and for developers alike.
async fn concurrent_failed_logins_are_all_counted(s: &Store) {
    s.insert_user(&user("race_u", Some("race_u@x.io"), None))
        .await
        .unwrap();
    let bump = |mut l: LockState| {
        l.failed_count += 1;
        Some(l)
    };
    let claims: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.update_lock_state("race_u", bump).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for c in claims {
        seen.push(c.await.unwrap().unwrap().failed_count);
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..80).collect::<Vec<i64>>(),
        "each claim saw the one before"
    );
    let u = s.get_user("race_u").await.unwrap().unwrap();
    assert_eq!(u.failed_count, 80);
    // `None` leaves the state; an unknown user is `None`
    let seen = s.update_lock_state("race_u", |_| None).await.unwrap();
    assert_eq!(seen.map(|l| l.failed_count), Some(80));
    assert_eq!(
        s.get_user("race_u").await.unwrap().unwrap().failed_count,
        80
    );
    assert!(s.update_lock_state("nobody", bump).await.unwrap().is_none());
}
