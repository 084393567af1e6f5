//! Reports: a batch merges in order into the latest state and appends to the history; on SQLite
//! new reports wait in a journal until compaction, and every read sees them either way.

use crate::{devices_of, product, report, state};
use rampart_store::*;

/// Device `d1` with two reports: power and temp at 200, temp again at 300.
async fn with_two_reports(s: &Store) {
    devices_of(s, "pk1", &[("d1", "hw1")]).await;
    s.record_reports(&[
        report("d1", 200, r#"{"temp":21.5,"power":true}"#),
        report("d1", 300, r#"{"temp":22}"#),
    ])
    .await
    .unwrap();
}

async fn a_batch_merges_in_order_into_the_state_and_the_history(s: Store) {
    with_two_reports(&s).await;
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
    assert_eq!(
        state(&s, "d1").await,
        serde_json::json!({"temp": 22, "power": true})
    );
}

/// `limit` counts points, also when it cuts a report in two.
async fn a_history_limit_counts_points(s: Store) {
    with_two_reports(&s).await;
    let two_points = s.history("d1", None, 0, i64::MAX, 2).await.unwrap();
    assert_eq!(two_points.len(), 2);
    assert_eq!(
        (two_points[1].ts, two_points[1].point.as_str()),
        (200, "power")
    );
}

async fn a_history_is_filtered_by_point_and_time(s: Store) {
    with_two_reports(&s).await;
    let temp = s.history("d1", Some("temp"), 250, 400, 10).await.unwrap();
    assert_eq!(temp.len(), 1);
    let power = s
        .history("d1", Some("power"), 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!((power.len(), power[0].value.as_str()), (1, "true"));
}

/// Names that would be JSON paths or SQL are just names that match nothing, journalled or
/// compacted.
async fn odd_point_names_match_nothing(s: Store) {
    with_two_reports(&s).await;
    for compacted in [false, true] {
        if compacted {
            s.compact_reports().await.unwrap();
        }
        for odd in ["$", "$.temp", "temp.x", "x' OR '1'='1"] {
            assert!(
                s.history("d1", Some(odd), 0, i64::MAX, 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "{odd} (compacted: {compacted})"
            );
        }
    }
}

/// SQLite keeps new reports in a journal until the writer compacts it: the same answers after.
async fn compaction_keeps_every_answer(s: Store) {
    with_two_reports(&s).await;
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
    assert_eq!(
        state(&s, "d1").await,
        serde_json::json!({"temp": 22, "power": true})
    );
}

/// 3000 reports of `d1` at 1000..3999, one point each.
fn many() -> Vec<ReportRow> {
    (0..3000)
        .map(|i| report("d1", 1000 + i, r#"{"temp":1}"#))
        .collect()
}

async fn a_large_batch_is_stored_whole(s: Store) {
    with_two_reports(&s).await;
    s.record_reports(&many()).await.unwrap();
    let temps = s
        .history("d1", Some("temp"), 1000, 5000, 5000)
        .await
        .unwrap();
    assert_eq!(temps.len(), 3000);
}

/// One batch spanning several devices updates each of them; listing sees the new states.
async fn a_batch_of_several_devices_updates_each(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1"), ("d2", "hw2")]).await;
    s.record_reports(&[report("d1", 5000, r#"{"temp":1,"power":true}"#)])
        .await
        .unwrap();
    s.record_reports(&[
        report("d1", 6000, r#"{"power":false}"#),
        report("d2", 6001, r#"{"temp":-4.5}"#),
    ])
    .await
    .unwrap();
    assert_eq!(
        state(&s, "d1").await,
        serde_json::json!({"temp": 1, "power": false})
    );
    let d2 = s.get_device("d2").await.unwrap().unwrap();
    assert_eq!(d2.last_seen, Some(6001));
    assert_eq!(state(&s, "d2").await, serde_json::json!({"temp": -4.5}));
    let (devs, n) = s.list_devices(Some("pk1"), None, 0, 10).await.unwrap();
    assert_eq!((devs.len(), n), (2, 2));
    let listed: Vec<serde_json::Value> = devs
        .iter()
        .map(|d| serde_json::from_str(&d.state).unwrap())
        .collect();
    assert!(listed.contains(&serde_json::json!({"temp": 1, "power": false})));
    assert!(listed.contains(&serde_json::json!({"temp": -4.5})));
}

/// History reads see compacted and journalled reports together, newest first.
async fn a_history_merges_compacted_and_journalled_reports(s: Store) {
    with_two_reports(&s).await;
    s.record_reports(&many()).await.unwrap();
    s.compact_reports().await.unwrap();
    s.record_reports(&[report("d1", 7000, r#"{"temp":2}"#)])
        .await
        .unwrap();
    let latest = s.history("d1", Some("temp"), 0, i64::MAX, 2).await.unwrap();
    let ts: Vec<i64> = latest.iter().map(|h| h.ts).collect();
    assert_eq!(ts, vec![7000, 3999]);
}

/// A wipe also drops reports not compacted yet, and a later compaction does not bring them back.
async fn a_wipe_drops_reports_not_compacted_yet(s: Store) {
    devices_of(&s, "pk1", &[("d1", "hw1"), ("d2", "hw2")]).await;
    s.record_reports(&[
        report("d1", 6000, r#"{"power":false}"#),
        report("d2", 6001, r#"{"temp":-4.5}"#),
    ])
    .await
    .unwrap();
    s.compact_reports().await.unwrap();
    s.record_reports(&[report("d1", 7000, r#"{"temp":2}"#)])
        .await
        .unwrap();
    s.record_reports(&[report("d1", 8000, r#"{"power":true}"#)])
        .await
        .unwrap();
    s.clear_device_data("d1", true).await.unwrap();
    assert!(s
        .history("d1", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    s.compact_reports().await.unwrap();
    assert_eq!(state(&s, "d1").await, serde_json::json!({}));
    assert!(s
        .history("d1", None, 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(state(&s, "d2").await, serde_json::json!({"temp": -4.5}));
}

store_cases! {
    a_batch_merges_in_order_into_the_state_and_the_history,
    a_history_limit_counts_points,
    a_history_is_filtered_by_point_and_time,
    odd_point_names_match_nothing,
    compaction_keeps_every_answer,
    a_large_batch_is_stored_whole,
    a_batch_of_several_devices_updates_each,
    a_history_merges_compacted_and_journalled_reports,
    a_wipe_drops_reports_not_compacted_yet,
}

/// SQLite only (PostgreSQL has no journal): reopening after a crash compacts what was journalled.
#[tokio::test]
async fn sqlite_reports_journalled_before_a_crash_are_in_the_history_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let s = Store::open_sqlite(&path).await.unwrap();
        s.insert_product(&product("pk1")).await.unwrap();
        s.insert_device(&crate::device("d1", "pk1", "hw1"))
            .await
            .unwrap();
        let reports: Vec<ReportRow> = (0..5)
            .map(|i| report("d1", 100 + i, &format!(r#"{{"temp":{i}}}"#)))
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
