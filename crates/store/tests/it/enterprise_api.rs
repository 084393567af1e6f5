//! Enterprise API tables: access keys and their products, devices as a key reaches them, the
//! audit chain head and the tenant audit query.

use rampart_store::*;

fn enterprise(id: &str) -> EnterpriseRow {
    EnterpriseRow {
        enterprise_id: id.into(),
        name: id.into(),
        suspended: false,
        created_by: "operator".into(),
        created_at: 1,
    }
}

fn device(did: &str, pk: &str, created_at: i64) -> DeviceRow {
    DeviceRow {
        did: did.into(),
        product_key: pk.into(),
        hardware_id: did.into(),
        mode: "product".into(),
        secret_enc: vec![9],
        passcode_enc: vec![8],
        created_at,
        online: false,
        last_seen: None,
        state: "{}".into(),
    }
}

fn key(id: &str, ent: &str) -> AccessKeyRow {
    AccessKeyRow {
        key_id: id.into(),
        enterprise_id: ent.into(),
        secret_enc: vec![1, 1],
        prev_secret_enc: None,
        prev_valid_until: None,
        scopes: "read".into(),
        allow_ips: r#"["127.0.0.1/32"]"#.into(),
        sensitive_points: "pin".into(),
        disabled: false,
        expires_at: Some(99),
        created_by: "bootstrap".into(),
        created_at: 10,
    }
}

fn audit(ts: i64, tenant: Option<&str>, action: &str, actor: &str) -> AuditRow {
    AuditRow {
        ts,
        actor_kind: "access_key".into(),
        actor_id: actor.into(),
        tenant: tenant.map(Into::into),
        action: action.into(),
        target: Some(format!("t{ts}")),
        outcome: "ok".into(),
        ..Default::default()
    }
}

pub(crate) async fn suite(s: Store) {
    // enterprises without an owner, products, devices
    for e in ["ent_k1", "ent_k2"] {
        s.insert_enterprise_without_owner(&enterprise(e))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.insert_enterprise_without_owner(&enterprise("ent_k1"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(s.list_members("ent_k1").await.unwrap().is_empty());
    for (pk, e) in [("kp1", "ent_k1"), ("kp2", "ent_k1"), ("kp3", "ent_k2")] {
        s.insert_product(&crate::developers::product(pk, Some(e)))
            .await
            .unwrap();
    }
    for (i, (did, pk)) in [
        ("kd1", "kp1"),
        ("kd2", "kp2"),
        ("kd3", "kp3"),
        ("kd4", "kp1"),
    ]
    .into_iter()
    .enumerate()
    {
        s.insert_device(&device(did, pk, 100 + i as i64))
            .await
            .unwrap();
    }

    // keys
    let products = vec!["kp1".to_string(), "kp3".to_string()];
    s.insert_access_key(&key("rak_1", "ent_k1"), &products)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_access_key(&key("rak_1", "ent_k1"), &[]).await,
        Err(StoreError::Conflict)
    ));
    s.insert_access_key(&key("rak_2", "ent_k1"), &["kp2".to_string()])
        .await
        .unwrap();
    assert_eq!(
        s.get_access_key("rak_1").await.unwrap(),
        Some(key("rak_1", "ent_k1"))
    );
    assert_eq!(s.access_key_products("rak_1").await.unwrap(), products);
    let listed = s.list_access_keys("ent_k1").await.unwrap();
    let ids: Vec<(&str, usize)> = listed
        .iter()
        .map(|(k, p)| (k.key_id.as_str(), p.len()))
        .collect();
    assert_eq!(ids, vec![("rak_1", 2), ("rak_2", 1)]);
    assert!(s.list_access_keys("ent_k2").await.unwrap().is_empty());

    // a key reaches its products of its own enterprise only (kp3 is named but is ent_k2's)
    let (devs, n) = s
        .list_key_devices("rak_1", "ent_k1", "", 0, 10)
        .await
        .unwrap();
    let dids: Vec<&str> = devs.iter().map(|d| d.did.as_str()).collect();
    assert_eq!((dids, n), (vec!["kd1", "kd4"], 2));
    let (devs, n) = s
        .list_key_devices("rak_1", "ent_k1", "kp1", 1, 10)
        .await
        .unwrap();
    assert_eq!((devs.len(), devs[0].did.as_str(), n), (1, "kd4", 2));
    let (devs, n) = s
        .list_key_devices("rak_1", "ent_k1", "kp2", 0, 10)
        .await
        .unwrap();
    assert_eq!((devs.len(), n), (0, 0));
    let (devs, n) = s
        .list_key_devices("rak_2", "ent_k1", "", 0, 10)
        .await
        .unwrap();
    assert_eq!((devs.len(), devs[0].did.as_str(), n), (1, "kd2", 1));

    // disable, rotate, delete: only within the key's enterprise
    assert!(!s
        .set_access_key_disabled("ent_k2", "rak_1", true)
        .await
        .unwrap());
    assert!(s
        .set_access_key_disabled("ent_k1", "rak_1", true)
        .await
        .unwrap());
    assert!(s.get_access_key("rak_1").await.unwrap().unwrap().disabled);
    assert!(!s
        .rotate_access_key("ent_k2", "rak_1", &[1, 1], &[3], &[2], 500)
        .await
        .unwrap());
    assert!(
        !s.rotate_access_key("ent_k1", "rak_1", &[9], &[3], &[2, 2], 500)
            .await
            .unwrap(),
        "a concurrent rotation changed the current secret"
    );
    assert!(s
        .rotate_access_key("ent_k1", "rak_1", &[1, 1], &[3, 3], &[2, 2], 500)
        .await
        .unwrap());
    let k = s.get_access_key("rak_1").await.unwrap().unwrap();
    assert_eq!(
        (k.secret_enc, k.prev_secret_enc, k.prev_valid_until),
        (vec![2, 2], Some(vec![3, 3]), Some(500))
    );
    assert!(!s.delete_access_key("ent_k2", "rak_2").await.unwrap());
    assert!(s.delete_access_key("ent_k1", "rak_2").await.unwrap());
    assert!(s.get_access_key("rak_2").await.unwrap().is_none());
    assert!(s.access_key_products("rak_2").await.unwrap().is_empty());

    // the audit chain: each append sees the previous hash; the head follows
    let before = s.audit_chain_head().await.unwrap();
    let mut seen = Vec::new();
    for (i, (tenant, action, actor)) in [
        (Some("ent_k1"), "device.command", "rak_1"),
        (Some("ent_k2"), "device.command", "rak_9"),
        (None, "user.login", "u1"),
        (Some("ent_k1"), "enterprise.device_read", "rak_1"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut prev_seen = String::new();
        s.append_audit(&audit(1000 + i as i64, tenant, action, actor), |prev| {
            prev_seen = prev.to_owned();
            format!("hash{i}")
        })
        .await
        .unwrap();
        seen.push(prev_seen);
    }
    assert_eq!(seen[0], before.last_hash);
    assert_eq!(&seen[1..], ["hash0", "hash1", "hash2"]);
    let head = s.audit_chain_head().await.unwrap();
    assert_eq!(
        (head.entries, head.last_hash.as_str()),
        (before.entries + 4, "hash3")
    );
    let all = s.audit_entries_after(0, 1000).await.unwrap();
    let last = all.last().unwrap();
    assert_eq!(
        (last.prev_hash.as_deref(), last.hash.as_deref()),
        (Some("hash2"), Some("hash3"))
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let tail = s
        .audit_entries_after(all[all.len() - 3].id, 2)
        .await
        .unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].hash.as_deref(), Some("hash3"));

    // concurrent appends never fork the chain
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(&audit(2000 + i, None, "x", "c"), |prev| {
                format!("c{i}<{}>", &prev[..prev.len().min(8)])
            })
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.audit_entries_after(0, 1000).await.unwrap();
    let chained: Vec<&AuditEntryRow> = all.iter().filter(|e| e.hash.is_some()).collect();
    for w in chained.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash, "fork at {}", w[1].id);
    }
    assert_eq!(
        s.audit_chain_head().await.unwrap().entries,
        chained.len() as i64
    );

    // the tenant query: one tenant's rows, filtered, newest first
    let (rows, n) = s
        .list_tenant_audit("ent_k1", &AuditFilter::default(), 0, 10)
        .await
        .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.row.action.as_str()).collect();
    assert_eq!(
        (actions, n),
        (vec!["enterprise.device_read", "device.command"], 2)
    );
    let only = |f: AuditFilter| {
        let s = s.clone();
        async move { s.list_tenant_audit("ent_k1", &f, 0, 10).await.unwrap().1 }
    };
    let f = AuditFilter {
        action: "device.command".into(),
        ..Default::default()
    };
    assert_eq!(only(f).await, 1);
    let f = AuditFilter {
        actor_kind: "access_key".into(),
        actor_id: "rak_1".into(),
        target: "t1003".into(),
        ..Default::default()
    };
    assert_eq!(only(f).await, 1);
    let f = AuditFilter {
        from: 1001,
        to: Some(1002),
        ..Default::default()
    };
    assert_eq!(only(f).await, 0);
    let f = AuditFilter {
        from: 1000,
        to: Some(1000),
        ..Default::default()
    };
    assert_eq!(only(f).await, 1);
    let (page, n) = s
        .list_tenant_audit("ent_k1", &AuditFilter::default(), 1, 1)
        .await
        .unwrap();
    assert_eq!(
        (page.len(), page[0].row.action.as_str(), n),
        (1, "device.command", 2)
    );
}
