//! Factory batches: each identity stored once, a batch whole or not at all.

use crate::product;
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

store_cases! {
    a_factory_batch_stores_each_identity,
    a_factory_batch_reusing_a_serial_is_refused_whole,
}
