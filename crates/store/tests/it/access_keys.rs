//! Access keys: stored with the products they name, reaching only those their enterprise still
//! owns; disabled, rotated and deleted only within their enterprise.

use crate::{developers::owned_product, enterprise};
use rampart_store::*;

fn device(did: &str, pk: &str, created_at: i64) -> DeviceRow {
    DeviceRow {
        created_at,
        ..crate::device(did, pk, did)
    }
}

pub(crate) fn key(id: &str, ent: &str) -> AccessKeyRow {
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

/// Enterprises `ent_k1` (products kp1, kp2) and `ent_k2` (kp3); devices kd1, kd4 of kp1, kd2 of
/// kp2, kd3 of kp3; key `rak_1` of ent_k1 naming kp1 and kp3, key `rak_2` naming kp2.
async fn with_keys(s: &Store) {
    for e in ["ent_k1", "ent_k2"] {
        s.insert_enterprise_without_owner(&enterprise(e))
            .await
            .unwrap();
    }
    for (pk, e) in [("kp1", "ent_k1"), ("kp2", "ent_k1"), ("kp3", "ent_k2")] {
        s.insert_product(&owned_product(pk, Some(e))).await.unwrap();
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
    s.insert_access_key(&key("rak_1", "ent_k1"), &["kp1".into(), "kp3".into()])
        .await
        .unwrap();
    s.insert_access_key(&key("rak_2", "ent_k1"), &["kp2".to_string()])
        .await
        .unwrap();
}

async fn access_keys_are_stored_and_listed_with_their_products(s: Store) {
    with_keys(&s).await;
    assert!(matches!(
        s.insert_access_key(&key("rak_1", "ent_k1"), &[]).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_access_key("rak_1").await.unwrap(),
        Some(key("rak_1", "ent_k1"))
    );
    assert_eq!(
        s.access_key_products("rak_1").await.unwrap(),
        vec!["kp1".to_string(), "kp3".to_string()]
    );
    let listed = s.list_access_keys("ent_k1").await.unwrap();
    let ids: Vec<(&str, usize)> = listed
        .iter()
        .map(|(k, p)| (k.key_id.as_str(), p.len()))
        .collect();
    assert_eq!(ids, vec![("rak_1", 2), ("rak_2", 1)]);
    assert!(s.list_access_keys("ent_k2").await.unwrap().is_empty());
}

/// A key reaches its products of its own enterprise only (kp3 is named but is ent_k2's).
async fn a_key_reaches_only_its_enterprises_products(s: Store) {
    with_keys(&s).await;
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
}

async fn a_key_is_disabled_rotated_and_deleted_within_its_enterprise(s: Store) {
    with_keys(&s).await;
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
}

store_cases! {
    access_keys_are_stored_and_listed_with_their_products,
    a_key_reaches_only_its_enterprises_products,
    a_key_is_disabled_rotated_and_deleted_within_its_enterprise,
}
