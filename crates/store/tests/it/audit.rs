//! The audit log: the operator's query by action, the hash chain (each append sees the previous
//! hash, concurrent appends never fork it) and a tenant's filtered query.

use rampart_store::*;

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

/// Four chained entries, hashed `hash0`..`hash3`: two of tenant `ent_k1`, one of `ent_k2`, one
/// of no tenant. Returns the previous hash each append was given.
async fn four_entries(s: &Store) -> Vec<String> {
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
    seen
}

async fn audit_entries_are_listed_by_action(s: Store) {
    let e = AuditRow {
        ts: 1,
        actor_kind: "admin".into(),
        actor_id: "root".into(),
        action: "product.create".into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    s.append_audit(&e, |prev| format!("h1<{prev}>"))
        .await
        .unwrap();
    assert_eq!(
        s.list_audit(Some("product.create"), 10).await.unwrap(),
        vec![e]
    );
    assert!(s.list_audit(Some("nothing"), 10).await.unwrap().is_empty());
}

/// Each append sees the previous hash; the head follows.
async fn each_audit_append_sees_the_previous_hash(s: Store) {
    let before = s.audit_chain_head().await.unwrap();
    let seen = four_entries(&s).await;
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
}

async fn concurrent_audit_appends_never_fork_the_chain(s: Store) {
    four_entries(&s).await;
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
    assert_eq!(chained.len(), 20);
    for w in chained.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash, "fork at {}", w[1].id);
    }
    assert_eq!(
        s.audit_chain_head().await.unwrap().entries,
        chained.len() as i64
    );
}

/// The tenant query: one tenant's rows, filtered, newest first.
async fn a_tenant_audit_query_is_filtered_newest_first(s: Store) {
    four_entries(&s).await;
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

/// The operator's query sees every entry, with a tenant or not; a tenant narrows it to that
/// tenant's; the filters apply as on a tenant's query.
async fn the_operator_audit_query_sees_every_tenant_and_none(s: Store) {
    four_entries(&s).await;
    let all = |tenant: &'static str, f: AuditFilter| {
        let s = s.clone();
        async move { s.list_any_audit(tenant, &f, 0, 10).await.unwrap() }
    };
    let (rows, n) = all("", AuditFilter::default()).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.row.action.as_str()).collect();
    assert_eq!(
        (actions, n),
        (
            vec![
                "enterprise.device_read",
                "user.login",
                "device.command",
                "device.command"
            ],
            4
        )
    );
    assert_eq!(all("ent_k2", AuditFilter::default()).await.1, 1);
    let f = AuditFilter {
        action: "device.command".into(),
        ..Default::default()
    };
    assert_eq!(all("", f).await.1, 2);
    let f = AuditFilter {
        actor_id: "u1".into(),
        ..Default::default()
    };
    let (rows, n) = all("", f).await;
    assert_eq!((n, rows[0].row.tenant.clone()), (1, None));
}

store_cases! {
    the_operator_audit_query_sees_every_tenant_and_none,
    audit_entries_are_listed_by_action,
    each_audit_append_sees_the_previous_hash,
    concurrent_audit_appends_never_fork_the_chain,
    a_tenant_audit_query_is_filtered_newest_first,
}
