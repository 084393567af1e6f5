//! Webhook tables: webhooks of an enterprise, enabling and disabling, dead letters paged, redriven
//! into the event queue in order (one or all), deleted, and a webhook deleted with its dead
//! letters, groups and queued events.

use crate::enterprise;
use rampart_store::*;

/// The subkey of `rwh_a`'s subscription group.
const SUB: &str = "~rwh_a";

pub(crate) fn hook(id: &str, ent: &str, created_at: i64) -> WebhookRow {
    WebhookRow {
        webhook_id: id.into(),
        enterprise_id: ent.into(),
        url: format!("https://hooks.example/{id}"),
        products: "whp".into(),
        kinds: "device_online device_status_kv".into(),
        secret_enc: vec![7, 7, 7],
        sensitive_points: String::new(),
        disabled: false,
        created_by: "rak_x".into(),
        created_at,
    }
}

fn letter(hook: &str, event_id: i64, did: &str) -> DeadLetterRow {
    DeadLetterRow {
        id: 0,
        webhook_id: hook.into(),
        event_id,
        product_key: "whp".into(),
        did: did.into(),
        kind: "device_status_kv".into(),
        ts: 1000 + event_id,
        body: format!(r#"{{"values":{{"seq":{event_id}}}}}"#),
        attempts: 3,
        last_status: (event_id % 2 == 0).then_some(500),
        last_error: "HTTP 500".into(),
        failed_at: 2000,
    }
}

fn ids(v: Vec<WebhookRow>) -> Vec<String> {
    v.into_iter().map(|h| h.webhook_id).collect()
}

/// Webhooks `rwh_a` and `rwh_b` of enterprise `ent_wh`.
async fn with_hooks(s: &Store) {
    s.insert_enterprise_without_owner(&enterprise("ent_wh"))
        .await
        .unwrap();
    s.insert_webhook(&hook("rwh_a", "ent_wh", 10))
        .await
        .unwrap();
    s.insert_webhook(&hook("rwh_b", "ent_wh", 20))
        .await
        .unwrap();
}

/// [`with_hooks`], dead letters of events 1..=5 for `rwh_a` (odd ones of d1, even of d2) and
/// of event 9 for `rwh_b`.
async fn with_letters(s: &Store) {
    with_hooks(s).await;
    let letters: Vec<DeadLetterRow> = (1..=5)
        .map(|i| letter("rwh_a", i, if i % 2 == 0 { "d2" } else { "d1" }))
        .collect();
    s.insert_dead_letters(&letters).await.unwrap();
    s.insert_dead_letters(&[letter("rwh_b", 9, "d9")])
        .await
        .unwrap();
}

async fn webhooks_conflict_on_the_same_id_and_are_listed_by_enterprise(s: Store) {
    with_hooks(&s).await;
    assert!(matches!(
        s.insert_webhook(&hook("rwh_a", "ent_wh", 30)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_webhook("rwh_a").await.unwrap(),
        Some(hook("rwh_a", "ent_wh", 10))
    );
    assert_eq!(s.get_webhook("rwh_none").await.unwrap(), None);
    assert_eq!(
        ids(s.list_webhooks("ent_wh").await.unwrap()),
        vec!["rwh_a", "rwh_b"]
    );
    assert!(s.list_webhooks("ent_other").await.unwrap().is_empty());
}

/// Disabling: only within the enterprise.
async fn a_webhook_is_disabled_only_within_its_enterprise(s: Store) {
    with_hooks(&s).await;
    assert!(!s
        .set_webhook_disabled("ent_other", "rwh_b", true)
        .await
        .unwrap());
    assert!(s
        .set_webhook_disabled("ent_wh", "rwh_b", true)
        .await
        .unwrap());
    assert!(s.get_webhook("rwh_b").await.unwrap().unwrap().disabled);
    assert_eq!(ids(s.list_enabled_webhooks().await.unwrap()), vec!["rwh_a"]);
    assert!(s
        .set_webhook_disabled("ent_wh", "rwh_b", false)
        .await
        .unwrap());
    assert_eq!(s.list_enabled_webhooks().await.unwrap().len(), 2);
}

/// Dead letters, paged oldest first.
async fn dead_letters_are_paged_oldest_first(s: Store) {
    with_letters(&s).await;
    let (page, total) = s.list_dead_letters("rwh_a", 0, 2).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(
        page.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let want = DeadLetterRow {
        id: page[1].id,
        ..letter("rwh_a", 2, "d2")
    };
    assert_eq!(page[1], want);
    assert_eq!(page[0].last_status, None);
    let (rest, _) = s.list_dead_letters("rwh_a", 2, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
}

/// Redrive one: it leaves the list and is queued under the webhook's group; redrive all: in
/// their order.
async fn dead_letters_are_redriven_into_the_webhooks_group(s: Store) {
    with_letters(&s).await;
    let (page, _) = s.list_dead_letters("rwh_a", 0, 2).await.unwrap();
    assert_eq!(
        s.redrive_dead_letters("rwh_a", Some(page[0].id), SUB, 3000)
            .await
            .unwrap(),
        1
    );
    // Another webhook's dead letter is not this one's to redrive.
    let (b, _) = s.list_dead_letters("rwh_b", 0, 10).await.unwrap();
    assert_eq!(
        s.redrive_dead_letters("rwh_a", Some(b[0].id), SUB, 3000)
            .await
            .unwrap(),
        0
    );
    let q = s.load_events("whp", SUB, 0, 100).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (
            q[0].did.as_str(),
            q[0].ts,
            q[0].created_at,
            q[0].body.as_str()
        ),
        ("d1", 1001, 3000, r#"{"values":{"seq":1}}"#)
    );
    assert_eq!(
        s.redrive_dead_letters("rwh_a", None, SUB, 3001)
            .await
            .unwrap(),
        4
    );
    let q = s.load_events("whp", SUB, q[0].id, 100).await.unwrap();
    assert_eq!(
        q.iter().map(|e| e.ts).collect::<Vec<_>>(),
        vec![1002, 1003, 1004, 1005]
    );
    assert_eq!(s.list_dead_letters("rwh_a", 0, 10).await.unwrap().1, 0);
    assert_eq!(s.list_dead_letters("rwh_b", 0, 10).await.unwrap().1, 1);
}

/// Delete one and all, each webhook its own.
async fn dead_letters_are_deleted_one_or_all(s: Store) {
    with_hooks(&s).await;
    s.insert_dead_letters(&[letter("rwh_a", 20, "d1"), letter("rwh_a", 21, "d1")])
        .await
        .unwrap();
    let (l, _) = s.list_dead_letters("rwh_a", 0, 10).await.unwrap();
    assert_eq!(
        s.delete_dead_letters("rwh_a", Some(l[0].id)).await.unwrap(),
        1
    );
    assert_eq!(
        s.delete_dead_letters("rwh_b", Some(l[1].id)).await.unwrap(),
        0
    );
    assert_eq!(s.delete_dead_letters("rwh_a", None).await.unwrap(), 1);
    assert_eq!(s.list_dead_letters("rwh_a", 0, 10).await.unwrap().1, 0);
}

/// Deleting a webhook takes its dead letters, groups and queued events, and nobody else's.
async fn deleting_a_webhook_takes_its_letters_group_and_events(s: Store) {
    with_letters(&s).await;
    assert_eq!(
        s.redrive_dead_letters("rwh_a", None, SUB, 3001)
            .await
            .unwrap(),
        5
    );
    s.upsert_event_group(&EventGroupRow {
        product_key: "whp".into(),
        subkey: SUB.into(),
        kinds: "device_status_kv".into(),
        last_seen: 1,
    })
    .await
    .unwrap();
    s.insert_dead_letters(&[letter("rwh_a", 30, "d1")])
        .await
        .unwrap();
    let other = QueuedEventRow {
        id: 0,
        product_key: "whp".into(),
        subkey: "~rwh_b".into(),
        did: "d9".into(),
        kind: "device_status_kv".into(),
        ts: 1,
        body: "{}".into(),
        created_at: 1,
    };
    s.insert_events(&[other]).await.unwrap();
    assert!(!s.delete_webhook("ent_other", "rwh_a", SUB).await.unwrap());
    assert!(s.delete_webhook("ent_wh", "rwh_a", SUB).await.unwrap());
    assert!(!s.delete_webhook("ent_wh", "rwh_a", SUB).await.unwrap());
    assert_eq!(s.get_webhook("rwh_a").await.unwrap(), None);
    assert!(s.load_events("whp", SUB, 0, 100).await.unwrap().is_empty());
    assert!(!s
        .list_event_groups()
        .await
        .unwrap()
        .iter()
        .any(|g| g.subkey == SUB));
    assert_eq!(s.list_dead_letters("rwh_a", 0, 10).await.unwrap().1, 0);
    assert_eq!(s.list_dead_letters("rwh_b", 0, 10).await.unwrap().1, 1);
    assert_eq!(
        s.load_events("whp", "~rwh_b", 0, 10).await.unwrap().len(),
        1
    );
}

store_cases! {
    webhooks_conflict_on_the_same_id_and_are_listed_by_enterprise,
    a_webhook_is_disabled_only_within_its_enterprise,
    dead_letters_are_paged_oldest_first,
    dead_letters_are_redriven_into_the_webhooks_group,
    dead_letters_are_deleted_one_or_all,
    deleting_a_webhook_takes_its_letters_group_and_events,
}
