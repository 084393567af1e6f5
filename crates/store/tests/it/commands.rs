//! Commands: recorded, moved forward only, purged after they expired.

use rampart_store::*;

fn row(id: &str, status: &str, expires_at: i64) -> CommandRow {
    CommandRow {
        did: "d1".into(),
        id: id.into(),
        created_at: 10,
        updated_at: 10,
        status: status.into(),
        expires_at,
        detail: None,
    }
}

async fn a_command_moves_forward_and_never_back(s: Store) {
    s.insert_command(&row("c1", "queued", 1000), 0)
        .await
        .unwrap();
    assert_eq!(
        s.get_command("d1", "c1").await.unwrap(),
        Some(row("c1", "queued", 1000))
    );
    assert!(
        s.get_command("d2", "c1").await.unwrap().is_none(),
        "another device's id"
    );
    assert!(s
        .move_command("d1", "c1", &["queued"], "sent", None, 20)
        .await
        .unwrap());
    assert!(s
        .move_command("d1", "c1", &["queued", "sent"], "error", Some("busy"), 30)
        .await
        .unwrap());
    // An ack recorded first is not overwritten by a late "sent".
    assert!(!s
        .move_command("d1", "c1", &["queued"], "sent", None, 40)
        .await
        .unwrap());
    let got = s.get_command("d1", "c1").await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_str(), got.detail.as_deref(), got.updated_at),
        ("error", Some("busy"), 30)
    );
    assert!(!s
        .move_command("d1", "nope", &["queued"], "sent", None, 40)
        .await
        .unwrap());
    assert!(matches!(
        s.insert_command(&row("c1", "queued", 1000), 0).await,
        Err(StoreError::Conflict)
    ));
}

async fn a_command_is_forgotten(s: Store) {
    s.insert_command(&row("a", "queued", 1000), 0)
        .await
        .unwrap();
    s.delete_command("d1", "a").await.unwrap();
    assert!(s.get_command("d1", "a").await.unwrap().is_none());
}

async fn expired_commands_are_purged_on_the_way(s: Store) {
    s.insert_command(&row("old", "ok", 100), 0).await.unwrap();
    s.insert_command(&row("new", "ok", 5000), 0).await.unwrap();
    s.insert_command(&row("next", "queued", 9000), 1000)
        .await
        .unwrap();
    assert!(s.get_command("d1", "old").await.unwrap().is_none());
    assert!(s.get_command("d1", "new").await.unwrap().is_some());
    assert!(s.get_command("d1", "next").await.unwrap().is_some());
}

store_cases! {
    a_command_moves_forward_and_never_back,
    a_command_is_forgotten,
    expired_commands_are_purged_on_the_way,
}
