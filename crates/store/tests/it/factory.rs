//! Factory batches: each identity stored once, a batch whole or not at all; batches issued under
//! a factory credential never pass its budget; a revoked batch loses its unregistered identities.

use crate::{device, product};
use rampart_store::*;

async fn with_batch_b1(s: &Store) {
    s.insert_product(&product("pk1")).await.unwrap();
    let batch = vec![("s1".to_string(), vec![1u8]), ("s2".to_string(), vec![2u8])];
    s.insert_factory_batch("b1", "pk1", &batch, 1)
        .await
        .unwrap();
}

async fn a_factory_batch_stores_each_identity(s: Store) {
    with_batch_b1(&s).await;
    let f = s.get_factory_identity("s2").await.unwrap().unwrap();
    assert_eq!(
        (f.batch_id.as_str(), f.secret_enc.as_slice()),
        ("b1", &[2u8][..])
    );
}

async fn a_factory_batch_reusing_a_serial_is_refused_whole(s: Store) {
    with_batch_b1(&s).await;
    let dup = vec![("s3".to_string(), vec![3u8]), ("s1".to_string(), vec![1u8])];
    assert!(matches!(
        s.insert_factory_batch("b2", "pk1", &dup, 1).await,
        Err(StoreError::Conflict)
    ));
    assert!(s.get_factory_identity("s3").await.unwrap().is_none());
}

/// A credential of product `pk` with a budget of `max` identities, valid until far ahead.
pub(crate) fn credential(id: &str, pk: &str, max: i64) -> FactoryCredentialRow {
    FactoryCredentialRow {
        credential_id: id.into(),
        product_key: pk.into(),
        name: "line".into(),
        secret_enc: vec![4, 4],
        max_devices: max,
        issued: 0,
        expires_at: i64::MAX / 2,
        created_at: 1,
        created_by: "developer:d1".into(),
        revoked_at: None,
    }
}

fn serials(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}"), vec![i as u8]))
        .collect()
}

async fn a_credential_never_issues_past_its_budget(s: Store) {
    s.insert_product(&product("pk1")).await.unwrap();
    s.insert_factory_credential(&credential("fc1", "pk1", 5))
        .await
        .unwrap();
    let issue = |batch: &'static str, n: usize| {
        let s = s.clone();
        async move {
            s.insert_factory_batch_for("fc1", batch, "pk1", &serials(batch, n), 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(issue("b1", 3).await, CredentialIssue::Stored);
    // Two batches of two race for the two identities left: exactly one lands.
    let (a, b) = tokio::join!(issue("b2", 2), issue("b3", 2));
    assert_eq!(
        [a, b]
            .iter()
            .filter(|r| **r == CredentialIssue::Stored)
            .count(),
        1
    );
    assert_eq!(issue("b4", 1).await, CredentialIssue::Refused);
    let c = s.factory_credential("fc1").await.unwrap().unwrap();
    assert_eq!(c.issued, 5);
    // A refused batch stored nothing; a stored one remembers its credential.
    let refused = if a == CredentialIssue::Refused {
        "b2"
    } else {
        "b3"
    };
    assert!(s.factory_batch(refused).await.unwrap().is_none());
    assert!(s.get_factory_identity("b40").await.unwrap().is_none());
    let b1 = s.factory_batch("b1").await.unwrap().unwrap();
    assert_eq!(b1.credential_id.as_deref(), Some("fc1"));
    // Another product's key, a revoked or an expired credential issue nothing.
    s.insert_factory_credential(&credential("fc2", "pk1", 100))
        .await
        .unwrap();
    let other = s
        .insert_factory_batch_for("fc2", "b5", "pk2", &serials("b5", 1), 10)
        .await
        .unwrap();
    assert_eq!(other, CredentialIssue::Refused);
    let expired = s
        .insert_factory_batch_for("fc2", "b6", "pk1", &serials("b6", 1), i64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(expired, CredentialIssue::Refused);
    assert!(s.revoke_factory_credential("fc2", 20).await.unwrap());
    assert!(!s.revoke_factory_credential("fc2", 21).await.unwrap());
    let revoked = s
        .insert_factory_batch_for("fc2", "b7", "pk1", &serials("b7", 1), 30)
        .await
        .unwrap();
    assert_eq!(revoked, CredentialIssue::Refused);
    let list = s.factory_credentials("pk1").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].revoked_at, Some(20));
}

async fn revoking_a_batch_removes_only_its_unregistered_identities(s: Store) {
    with_batch_b1(&s).await;
    // s1 registered as a device of pk1; s2 did not.
    s.insert_device(&device("d1", "pk1", "s1")).await.unwrap();
    assert_eq!(s.revoke_factory_batch("b1", 50).await.unwrap(), Some(1));
    assert!(s.get_factory_identity("s1").await.unwrap().is_some());
    assert!(s.get_factory_identity("s2").await.unwrap().is_none());
    let b = s.factory_batch("b1").await.unwrap().unwrap();
    assert_eq!((b.revoked_at, b.revoked), (Some(50), 1));
    assert_eq!(s.revoke_factory_batch("b1", 60).await.unwrap(), None);
    assert_eq!(s.revoke_factory_batch("nosuch", 60).await.unwrap(), None);
}

store_cases! {
    a_factory_batch_stores_each_identity,
    a_factory_batch_reusing_a_serial_is_refused_whole,
    a_credential_never_issues_past_its_budget,
    revoking_a_batch_removes_only_its_unregistered_identities,
}
