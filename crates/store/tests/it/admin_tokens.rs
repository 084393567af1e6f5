//! Named admin tokens: stored by hash, found by hash, listed, deleted once.

use rampart_store::*;

fn row(id: &str, hash: &str, at: i64) -> AdminTokenRow {
    AdminTokenRow {
        id: id.into(),
        name: format!("name of {id}"),
        token_sha256: hash.into(),
        hint: "ab12".into(),
        created_by: "cli:local".into(),
        created_at: at,
    }
}

async fn admin_tokens_are_found_by_hash_listed_and_deleted(s: Store) {
    s.insert_admin_token(&row("t2", "h2", 20)).await.unwrap();
    s.insert_admin_token(&row("t1", "h1", 10)).await.unwrap();
    assert!(matches!(
        s.insert_admin_token(&row("t3", "h1", 30)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.admin_token_by_hash("h2").await.unwrap(),
        Some(row("t2", "h2", 20))
    );
    assert_eq!(s.admin_token_by_hash("nope").await.unwrap(), None);
    let ids: Vec<String> = s
        .list_admin_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["t1", "t2"]);
    assert_eq!(
        s.delete_admin_token("t1").await.unwrap(),
        Some(row("t1", "h1", 10))
    );
    assert_eq!(s.delete_admin_token("t1").await.unwrap(), None);
    assert_eq!(s.admin_token_by_hash("h1").await.unwrap(), None);
    assert_eq!(s.list_admin_tokens().await.unwrap().len(), 1);
}

async fn schema_version_is_the_newest_migration(s: Store) {
    assert!(s.schema_version().await.unwrap() >= 16);
}

store_cases! {
    admin_tokens_are_found_by_hash_listed_and_deleted,
    schema_version_is_the_newest_migration,
}
