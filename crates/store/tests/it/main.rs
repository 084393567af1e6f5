//! The store suite, run against SQLite always and PostgreSQL when `RAMPART_TEST_POSTGRES_URL` is set.
//! Each PostgreSQL run gets its own schema, so tests never share state.

mod accounts;
mod at_rest;
mod developers;
mod enterprise_api;
mod events;
mod no_string_sql;
mod oauth;
mod quotas;
mod webhooks;

use rampart_store::*;
use std::str::FromStr;

fn product(pk: &str) -> ProductRow {
    ProductRow {
        product_key: pk.into(),
        name: "lamp".into(),
        secret_enc: vec![1, 2, 3],
        dynamic_registration: true,
        allowlist: false,
        report_limit_per_min: 60,
        model: "[]".into(),
        enterprise_id: None,
        created_at: 1,
    }
}

fn device(did: &str, pk: &str, hw: &str) -> DeviceRow {
    DeviceRow {
        did: did.into(),
        product_key: pk.into(),
        hardware_id: hw.into(),
        mode: "product".into(),
        secret_enc: vec![9],
        passcode_enc: vec![8],
        created_at: 5,
        online: false,
        last_seen: None,
        state: "{}".into(),
    }
}

async fn suite(s: Store) {
    // settings
    assert!(s.init_setting("k", "v1").await.unwrap());
    assert!(!s.init_setting("k", "v2").await.unwrap());
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.get_setting("missing").await.unwrap(), None);

    // products
    s.insert_product(&product("pk1")).await.unwrap();
    assert!(matches!(
        s.insert_product(&product("pk1")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_product("pk1").await.unwrap(), Some(product("pk1")));
    s.insert_product(&product("pk2")).await.unwrap();
    let (page, total) = s.list_products(1, 10).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));

    // allowlist
    let ids = vec!["aa".to_string(), "bb".to_string(), "aa".to_string()];
    assert_eq!(s.allowlist_add("pk1", &ids, 1).await.unwrap(), 2);
    assert!(s.allowlist_contains("pk1", "bb").await.unwrap());
    assert!(!s.allowlist_contains("pk2", "bb").await.unwrap());

    // factory
    let batch = vec![("s1".to_string(), vec![1u8]), ("s2".to_string(), vec![2u8])];
    s.insert_factory_batch("b1", "pk1", &batch, 1)
        .await
        .unwrap();
    let f = s.get_factory_identity("s2").await.unwrap().unwrap();
    assert_eq!(
        (f.batch_id.as_str(), f.secret_enc.as_slice()),
        ("b1", &[2u8][..])
    );
    // a batch that reuses a serial is refused whole
    let dup = vec![("s3".to_string(), vec![3u8]), ("s1".to_string(), vec![1u8])];
    assert!(matches!(
        s.insert_factory_batch("b2", "pk1", &dup, 1).await,
        Err(StoreError::Conflict)
    ));
    assert!(s.get_factory_identity("s3").await.unwrap().is_none());

    // devices
    s.insert_device(&device("d1", "pk1", "hw1")).await.unwrap();
    assert!(matches!(
        s.insert_device(&device("d2", "pk1", "hw1")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_device_by_hardware("pk1", "hw1")
            .await
            .unwrap()
            .unwrap()
            .did,
        "d1"
    );
    s.set_device_secret("d1", &[7]).await.unwrap();
    s.set_presence("d1", true, 100).await.unwrap();
    let d = s.get_device("d1").await.unwrap().unwrap();
    assert_eq!(
        (d.secret_enc, d.online, d.last_seen),
        (vec![7], true, Some(100))
    );
    let c = s.device_credentials("d1").await.unwrap().unwrap();
    assert_eq!((c.product_key.as_str(), c.secret_enc), ("pk1", vec![7]));
    assert!(s.device_credentials("nope").await.unwrap().is_none());
    // Several at once (CONNECTs batched): only the ids that exist come back, once each.
    let many = s
        .device_credentials_many(&["nope", "d1", "d1"])
        .await
        .unwrap();
    assert_eq!(many.len(), 1, "{many:?}");
    assert_eq!(
        (
            many[0].0.as_str(),
            many[0].1.product_key.as_str(),
            &many[0].1.secret_enc
        ),
        ("d1", "pk1", &vec![7])
    );
    assert!(s.device_credentials_many(&[]).await.unwrap().is_empty());
    assert_eq!(s.reset_presence().await.unwrap(), 1);

    // presence is group-committed with reports: a device's last row in a batch wins, and
    // `last_seen` never moves back
    s.insert_device(&device("p1", "pk2", "hw-p1"))
        .await
        .unwrap();
    s.insert_device(&device("p2", "pk2", "hw-p2"))
        .await
        .unwrap();
    let seen = |did: &str, online: bool, ts: i64| PresenceRow {
        did: did.into(),
        online,
        ts,
    };
    s.record_batch(
        &[ReportRow {
            did: "p1".into(),
            ts: 420,
            values: serde_json::from_str(r#"{"temp":1}"#).unwrap(),
        }],
        &[
            seen("p1", true, 400),
            seen("p2", true, 410),
            seen("p1", false, 450),
        ],
    )
    .await
    .unwrap();
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    let p2 = s.get_device("p2").await.unwrap().unwrap();
    assert_eq!((p1.online, p1.last_seen), (false, Some(450)));
    assert_eq!((p2.online, p2.last_seen), (true, Some(410)));
    let p1_state: serde_json::Value = serde_json::from_str(&p1.state).unwrap();
    assert_eq!(p1_state, serde_json::json!({"temp": 1}));
    // Several devices' states at once (the journal included on SQLite); unknown ones are left out.
    let states = s
        .device_states(&["p1".into(), "nope".into(), "p2".into()])
        .await
        .unwrap();
    let states: Vec<(&str, serde_json::Value)> = states
        .iter()
        .map(|(d, st)| (d.as_str(), serde_json::from_str(st).unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("p1", serde_json::json!({"temp": 1})),
            ("p2", serde_json::json!({}))
        ]
    );
    s.record_batch(&[], &[seen("p2", false, 300)])
        .await
        .unwrap();
    let p2 = s.get_device("p2").await.unwrap().unwrap();
    assert_eq!((p2.online, p2.last_seen), (false, Some(410)));
    s.record_batch(&[], &[]).await.unwrap();
    s.compact_reports().await.unwrap();

    // accepted CONNECT timestamps only move forward, alone or with reports and presence
    let connect = |did: &str, ts: i64| ConnectRow {
        did: did.into(),
        ts,
    };
    assert_eq!(
        s.device_credentials("p1")
            .await
            .unwrap()
            .unwrap()
            .connect_ts,
        0
    );
    s.record_writes(
        &[],
        &[],
        &[connect("p1", 700), connect("p1", 900), connect("p1", 800)],
    )
    .await
    .unwrap();
    s.record_writes(
        &[],
        &[seen("p2", true, 500)],
        &[connect("p1", 850), connect("p2", 5)],
    )
    .await
    .unwrap();
    let creds: std::collections::HashMap<String, DeviceCredentials> = s
        .device_credentials_many(&["p1", "p2"])
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!((creds["p1"].connect_ts, creds["p2"].connect_ts), (900, 5));
    s.record_writes(
        &[ReportRow {
            did: "p2".into(),
            ts: 510,
            values: serde_json::from_str(r#"{"temp":2}"#).unwrap(),
        }],
        &[],
        &[connect("p2", 6)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.device_credentials("p2")
            .await
            .unwrap()
            .unwrap()
            .connect_ts,
        6
    );
    s.compact_reports().await.unwrap();

    // a re-provisioning window: spent once, within its time, taking every binding with it
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 1_000).await.unwrap(),
        None
    );
    assert!(!s.open_reprovision("nope", 2_000).await.unwrap());
    assert!(s.open_reprovision("p1", 2_000).await.unwrap());
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 2_001).await.unwrap(),
        None,
        "expired"
    );
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    assert_eq!(
        (p1.secret_enc, p1.passcode_enc),
        (vec![9], vec![8]),
        "nothing changed"
    );
    assert!(s.open_reprovision("p1", 3_000).await.unwrap());
    assert_eq!(
        s.reprovision_device("p1", &[7], &[6], 2_500).await.unwrap(),
        Some(vec![])
    );
    let p1 = s.get_device("p1").await.unwrap().unwrap();
    assert_eq!((p1.secret_enc, p1.passcode_enc), (vec![7], vec![6]));
    assert_eq!(
        s.reprovision_device("p1", &[5], &[4], 2_600).await.unwrap(),
        None,
        "single use"
    );

    // reports and history: a batch merges in order into the latest state
    let report = |ts: i64, values: &str| ReportRow {
        did: "d1".into(),
        ts,
        values: serde_json::from_str(values).unwrap(),
    };
    s.record_reports(&[
        report(200, r#"{"temp":21.5,"power":true}"#),
        report(300, r#"{"temp":22}"#),
    ])
    .await
    .unwrap();
    s.record_reports(&[]).await.unwrap();
    let all = s.history("d1", None, 0, i64::MAX, 10).await.unwrap();
    let flat: Vec<(i64, &str, &str)> = all
        .iter()
        .map(|h| (h.ts, h.point.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(
        flat,
        vec![
            (300, "temp", "22"),
            (200, "power", "true"),
            (200, "temp", "21.5")
        ]
    );
    // `limit` counts points, also when it cuts a report in two
    let two_points = s.history("d1", None, 0, i64::MAX, 2).await.unwrap();
    assert_eq!(two_points.len(), 2);
    assert_eq!(
        (two_points[1].ts, two_points[1].point.as_str()),
        (200, "power")
    );
    let temp = s.history("d1", Some("temp"), 250, 400, 10).await.unwrap();
    assert_eq!(temp.len(), 1);
    let power = s
        .history("d1", Some("power"), 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!((power.len(), power[0].value.as_str()), (1, "true"));
    // names that would be JSON paths or SQL are just names that match nothing
    for odd in ["$", "$.temp", "temp.x", "x' OR '1'='1"] {
        assert!(
            s.history("d1", Some(odd), 0, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty(),
            "{odd}"
        );
    }
    let state: serde_json::Value =
        serde_json::from_str(&s.get_device("d1").await.unwrap().unwrap().state).unwrap();
    assert_eq!(state, serde_json::json!({"temp": 22, "power": true}));
    // SQLite keeps new reports in a journal until the writer compacts it: the same answers after
    let before = s.history("d1", None, 0, i64::MAX, 10).await.unwrap();
    let moved = s.compact_reports().await.unwrap();
    if s.backend() == "sqlite" {
        assert_eq!(moved, 2);
    }
    assert_eq!(s.journal_len(), 0);
    assert_eq!(s.compact_reports().await.unwrap(), 0);
    assert_eq!(
        s.history("d1", None, 0, i64::MAX, 10).await.unwrap(),
        before
    );
    let state: serde_json::Value =
        serde_json::from_str(&s.get_device("d1").await.unwrap().unwrap().state).unwrap();
    assert_eq!(state, serde_json::json!({"temp": 22, "power": true}));
    // a large batch goes through the chunked insert
    let many: Vec<ReportRow> = (0..3000)
        .map(|i| report(1000 + i, r#"{"temp":1}"#))
        .collect();
    s.record_reports(&many).await.unwrap();
    let temps = s
        .history("d1", Some("temp"), 1000, 5000, 5000)
        .await
        .unwrap();
    assert_eq!(temps.len(), 3000);
    // one batch spanning several devices updates each of them
    s.insert_device(&device("d2", "pk1", "hw2")).await.unwrap();
    let two = vec![
        report(6000, r#"{"power":false}"#),
        ReportRow {
            did: "d2".into(),
            ts: 6001,
            values: serde_json::from_str(r#"{"temp":-4.5}"#).unwrap(),
        },
    ];
    s.record_reports(&two).await.unwrap();
    let st = |d: DeviceRow| serde_json::from_str::<serde_json::Value>(&d.state).unwrap();
    let d1 = s.get_device("d1").await.unwrap().unwrap();
    assert_eq!(st(d1), serde_json::json!({"temp": 1, "power": false}));
    let d2 = s.get_device("d2").await.unwrap().unwrap();
    assert_eq!(d2.last_seen, Some(6001));
    assert_eq!(st(d2), serde_json::json!({"temp": -4.5}));
    // a point name that looks like SQL is just a value
    assert!(s
        .history("d1", Some("x' OR '1'='1"), 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    let (devs, n) = s.list_devices(Some("pk1"), 0, 10).await.unwrap();
    assert_eq!((devs.len(), n), (2, 2));
    let listed: Vec<serde_json::Value> = devs.into_iter().map(st).collect();
    assert!(listed.contains(&serde_json::json!({"temp": 1, "power": false})));
    assert!(listed.contains(&serde_json::json!({"temp": -4.5})));
    // history reads see compacted and journalled reports together, newest first
    s.compact_reports().await.unwrap();
    s.record_reports(&[report(7000, r#"{"temp":2}"#)])
        .await
        .unwrap();
    let latest = s.history("d1", Some("temp"), 0, i64::MAX, 2).await.unwrap();
    let ts: Vec<i64> = latest.iter().map(|h| h.ts).collect();
    assert_eq!(ts, vec![7000, 3999]);
    // a wipe also drops reports not compacted yet, and a later compaction does not bring them back
    s.record_reports(&[report(8000, r#"{"power":true}"#)])
        .await
        .unwrap();
    s.clear_device_data("d1", true).await.unwrap();
    assert!(s
        .history("d1", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    s.compact_reports().await.unwrap();
    assert_eq!(
        st(s.get_device("d1").await.unwrap().unwrap()),
        serde_json::json!({})
    );
    assert!(s
        .history("d1", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    let d2 = s.get_device("d2").await.unwrap().unwrap();
    assert_eq!(st(d2), serde_json::json!({"temp": -4.5}));

    // nonces
    assert!(s.use_nonce("reg", "n1", 1000, 0).await.unwrap());
    assert!(!s.use_nonce("reg", "n1", 1000, 10).await.unwrap());
    assert!(s.use_nonce("other", "n1", 1000, 10).await.unwrap());
    // expired nonces are purged
    assert!(s.use_nonce("reg", "n1", 3000, 2000).await.unwrap());

    // audit
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

#[tokio::test]
async fn sqlite_suite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    assert_eq!(s.backend(), "sqlite");
    suite(s.clone()).await;
    accounts::suite(s.clone()).await;
    oauth::suite(s.clone()).await;
    developers::suite(s.clone()).await;
    quotas::suite(s.clone()).await;
    enterprise_api::suite(s.clone()).await;
    at_rest::suite(s.clone()).await;
    at_rest::invitations(s.clone()).await;
    events::suite(s.clone()).await;
    webhooks::suite(s).await;
}

#[tokio::test]
async fn sqlite_reports_journalled_before_a_crash_are_in_the_history_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let s = Store::open_sqlite(&path).await.unwrap();
        s.insert_product(&product("pk1")).await.unwrap();
        s.insert_device(&device("d1", "pk1", "hw1")).await.unwrap();
        let reports: Vec<ReportRow> = (0..5)
            .map(|i| ReportRow {
                did: "d1".into(),
                ts: 100 + i,
                values: serde_json::from_str(&format!(r#"{{"temp":{i}}}"#)).unwrap(),
            })
            .collect();
        s.record_reports(&reports).await.unwrap();
        assert_eq!(s.journal_len(), 5);
        // No compaction, no close: as if the process died here.
    }
    let s = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(s.journal_len(), 0, "opening compacts what was journalled");
    assert_eq!(s.compact_reports().await.unwrap(), 0);
    let h = s
        .history("d1", Some("temp"), 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(
        h.iter().map(|r| r.ts).collect::<Vec<_>>(),
        vec![104, 103, 102, 101, 100]
    );
    let d = s.get_device("d1").await.unwrap().unwrap();
    assert_eq!(d.state, r#"{"temp":4}"#);
    assert_eq!(d.last_seen, Some(104));
}

#[tokio::test]
async fn postgres_suite() {
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        eprintln!("skipping postgres_suite: RAMPART_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("t_{}_{}", std::process::id(), rand_suffix());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let s = Store::open_postgres(opts).await.unwrap();
    assert_eq!(s.backend(), "postgres");
    suite(s.clone()).await;
    accounts::suite(s.clone()).await;
    oauth::suite(s.clone()).await;
    developers::suite(s.clone()).await;
    quotas::suite(s.clone()).await;
    enterprise_api::suite(s.clone()).await;
    at_rest::suite(s.clone()).await;
    at_rest::invitations(s.clone()).await;
    events::suite(s.clone()).await;
    webhooks::suite(s.clone()).await;
    s.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}
