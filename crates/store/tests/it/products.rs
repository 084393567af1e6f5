//! Products and their allowlists (ownership is in `developers`, where it meets readability).

use crate::product;
use rampart_store::*;

async fn products_conflict_on_the_same_key(s: Store) {
    s.insert_product(&product("pk1")).await.unwrap();
    assert!(matches!(
        s.insert_product(&product("pk1")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_product("pk1").await.unwrap(), Some(product("pk1")));
}

async fn products_are_listed_by_page_with_the_total(s: Store) {
    s.insert_product(&product("pk1")).await.unwrap();
    s.insert_product(&product("pk2")).await.unwrap();
    let (page, total) = s.list_products(1, 10).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
}

async fn an_allowlist_counts_new_ids_and_belongs_to_its_product(s: Store) {
    s.insert_product(&product("pk1")).await.unwrap();
    s.insert_product(&product("pk2")).await.unwrap();
    let ids = vec!["aa".to_string(), "bb".to_string(), "aa".to_string()];
    assert_eq!(s.allowlist_add("pk1", &ids, 1).await.unwrap(), 2);
    assert!(s.allowlist_contains("pk1", "bb").await.unwrap());
    assert!(!s.allowlist_contains("pk2", "bb").await.unwrap());
}

store_cases! {
    products_conflict_on_the_same_key,
    products_are_listed_by_page_with_the_total,
    an_allowlist_counts_new_ids_and_belongs_to_its_product,
}
