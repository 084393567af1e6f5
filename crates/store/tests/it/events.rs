//! Event stream tables: groups, batched queueing in order, loading after a cursor, batched
//! acknowledgement, retention by age and by count, stale groups, devices' products.

use crate::devices_of;
use rampart_store::*;

fn ev(pk: &str, sk: &str, did: &str, ts: i64, created_at: i64) -> QueuedEventRow {
    QueuedEventRow {
        id: 0,
        product_key: pk.into(),
        subkey: sk.into(),
        did: did.into(),
        kind: "device_status_kv".into(),
        ts,
        body: format!(r#"{{"values":{{"seq":{ts}}}}}"#),
        created_at,
    }
}

fn g(sk: &str, kinds: &str, seen: i64) -> EventGroupRow {
    EventGroupRow {
        product_key: "evp".into(),
        subkey: sk.into(),
        kinds: kinds.into(),
        last_seen: seen,
    }
}

/// Groups `a` (seen at 20) and `b` (seen at 5) of product `evp`.
async fn with_groups(s: &Store) {
    s.upsert_event_group(&g("a", "device_online", 10))
        .await
        .unwrap();
    s.upsert_event_group(&g("a", "device_online device_status_kv", 20))
        .await
        .unwrap();
    s.upsert_event_group(&g("b", "device_status_kv", 5))
        .await
        .unwrap();
}

/// [`with_groups`] and events 1..=5 queued for each group, created at 100.
async fn with_events(s: &Store) -> Vec<QueuedEventRow> {
    with_groups(s).await;
    let batch: Vec<QueuedEventRow> = (1..=5)
        .flat_map(|i| [ev("evp", "a", "d1", i, 100), ev("evp", "b", "d1", i, 100)])
        .collect();
    s.insert_events(&batch).await.unwrap();
    s.load_events("evp", "a", 0, 100).await.unwrap()
}

async fn an_event_group_is_upserted(s: Store) {
    with_groups(&s).await;
    let groups = s.list_event_groups().await.unwrap();
    assert_eq!(
        groups,
        vec![
            g("a", "device_online device_status_kv", 20),
            g("b", "device_status_kv", 5)
        ]
    );
}

/// A batch keeps its order in the ids; loading resumes after a cursor.
async fn a_batch_of_events_keeps_its_order(s: Store) {
    let a = with_events(&s).await;
    s.insert_events(&[]).await.unwrap();
    assert_eq!(
        a.iter().map(|r| r.ts).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(a.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(a[0].body, r#"{"values":{"seq":1}}"#);
    let after = s.load_events("evp", "a", a[1].id, 2).await.unwrap();
    assert_eq!(after.iter().map(|r| r.ts).collect::<Vec<_>>(), vec![3, 4]);
}

/// Acknowledged events are gone from their group only.
async fn acknowledged_events_leave_their_group_only(s: Store) {
    let a = with_events(&s).await;
    assert_eq!(s.delete_events(&[a[0].id, a[1].id]).await.unwrap(), 2);
    assert_eq!(s.delete_events(&[]).await.unwrap(), 0);
    assert_eq!(s.load_events("evp", "a", 0, 100).await.unwrap().len(), 3);
    assert_eq!(s.load_events("evp", "b", 0, 100).await.unwrap().len(), 5);
}

/// Retention: by count per group, then by age.
async fn events_expire_by_count_per_group_then_by_age(s: Store) {
    let a = with_events(&s).await;
    assert_eq!(s.delete_events(&[a[0].id, a[1].id]).await.unwrap(), 2);
    assert_eq!(s.expire_events(0, 2).await.unwrap(), 1 + 3);
    let b = s.load_events("evp", "b", 0, 100).await.unwrap();
    assert_eq!(b.iter().map(|r| r.ts).collect::<Vec<_>>(), vec![4, 5]);
    s.insert_events(&[ev("evp", "b", "d2", 9, 500)])
        .await
        .unwrap();
    assert_eq!(s.expire_events(200, 100).await.unwrap(), 4);
    assert_eq!(s.load_events("evp", "b", 0, 100).await.unwrap().len(), 1);
}

/// Groups not seen since a time go, with their events.
async fn stale_groups_go_with_their_events(s: Store) {
    with_events(&s).await;
    s.touch_event_groups(&[("evp".into(), "b".into())], 50)
        .await
        .unwrap();
    assert_eq!(s.delete_stale_event_groups(30).await.unwrap(), 1);
    let left = s.list_event_groups().await.unwrap();
    assert_eq!(
        left.iter().map(|g| g.subkey.as_str()).collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(s.load_events("evp", "a", 0, 100).await.unwrap().is_empty());
    assert_eq!(s.load_events("evp", "b", 0, 100).await.unwrap().len(), 5);
    assert_eq!(s.delete_stale_event_groups(60).await.unwrap(), 1);
    assert!(s.load_events("evp", "b", 0, 100).await.unwrap().is_empty());
}

/// Devices' products; unknown devices are left out.
async fn devices_products_leave_unknown_devices_out(s: Store) {
    assert!(s
        .device_products(&["no-such-device".into()])
        .await
        .unwrap()
        .is_empty());
    devices_of(&s, "evp", &[("d1", "hw1")]).await;
    assert_eq!(
        s.device_products(&["no-such-device".into(), "d1".into()])
            .await
            .unwrap(),
        vec![("d1".to_string(), "evp".to_string())]
    );
}

store_cases! {
    an_event_group_is_upserted,
    a_batch_of_events_keeps_its_order,
    acknowledged_events_leave_their_group_only,
    events_expire_by_count_per_group_then_by_age,
    stale_groups_go_with_their_events,
    devices_products_leave_unknown_devices_out,
}
