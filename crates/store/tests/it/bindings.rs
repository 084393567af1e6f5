//! Bindings: one owner per device, shares (pending, accepted, revoked), bind tokens, unbinding
//! everyone at once.

use crate::accounts::with_users;
use crate::devices_of;
use rampart_store::*;

/// Users `u1`..`u3` of `app1`; devices `dev_a` and `dev_b` of product `accpk`.
async fn with_devices(s: &Store) {
    devices_of(s, "accpk", &[("dev_a", "hw-dev_a"), ("dev_b", "hw-dev_b")]).await;
    with_users(s).await;
}

/// [`with_devices`], `u1` owning both devices.
async fn with_owner(s: &Store) {
    with_devices(s).await;
    s.insert_binding("dev_a", "u1", "owner", None, 1)
        .await
        .unwrap();
    s.insert_binding("dev_b", "u1", "owner", None, 3)
        .await
        .unwrap();
}

/// `u1`'s share of `dev_a` with `u3`, as a guest.
fn share(id: &str) -> ShareRow {
    ShareRow {
        share_id: id.into(),
        did: "dev_a".into(),
        owner_id: "u1".into(),
        invitee_id: "u3".into(),
        role: "guest".into(),
        status: "pending".into(),
        created_at: 5,
        accepted_at: None,
    }
}

fn tok(h: &str, exp: i64) -> BindTokenRow {
    BindTokenRow {
        token_hash: h.into(),
        did: "dev_a".into(),
        created_by: "u1".into(),
        expires_at: exp,
        created_at: 1,
    }
}

async fn a_device_has_one_owner(s: Store) {
    with_devices(&s).await;
    s.insert_binding("dev_a", "u1", "owner", None, 1)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_binding("dev_a", "u3", "owner", None, 2).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        s.insert_binding("dev_a", "u1", "member", None, 2).await,
        Err(StoreError::Conflict)
    ));
    s.insert_binding("dev_b", "u1", "owner", None, 3)
        .await
        .unwrap();
    assert_eq!(
        s.device_owner("dev_a").await.unwrap().as_deref(),
        Some("u1")
    );
    assert_eq!(
        s.binding_role("dev_a", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    let (page, total) = s.list_bindings("u1", 0, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(
        (page[0].did.as_str(), page[0].product_key.as_str()),
        ("dev_b", "accpk")
    );
}

/// Shares: pending, accepted (creates the binding), revoked (removes it).
async fn an_accepted_share_binds_until_it_is_deleted(s: Store) {
    with_owner(&s).await;
    let share = share("sh1");
    s.insert_share(&share).await.unwrap();
    assert_eq!(
        s.find_share("dev_a", "u3").await.unwrap(),
        Some(share.clone())
    );
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
    assert!(s.accept_share(&share, 6).await.unwrap());
    assert!(!s.accept_share(&share, 7).await.unwrap(), "only once");
    assert_eq!(
        s.binding_role("dev_a", "u3").await.unwrap().as_deref(),
        Some("guest")
    );
    assert_eq!(s.list_shares_of_device("dev_a").await.unwrap().len(), 1);
    assert!(s.list_shares_of_device("dev_b").await.unwrap().is_empty());
    let (list, total) = s.list_shares_for("u3", 0, 10).await.unwrap();
    assert_eq!((list.len(), total), (1, 1));
    assert_eq!(
        (list[0].status.as_str(), list[0].accepted_at),
        ("accepted", Some(6))
    );
    assert_eq!(
        s.user_device_roles("u3").await.unwrap(),
        vec![("dev_a".to_string(), "guest".to_string())]
    );
    assert!(s.delete_share("sh1").await.unwrap());
    assert_eq!(s.binding_role("dev_a", "u3").await.unwrap(), None);
}

/// A member removing their own binding removes the share too.
async fn a_member_removing_their_binding_removes_the_share(s: Store) {
    with_owner(&s).await;
    s.insert_share(&share("sh2")).await.unwrap();
    assert!(s.accept_share(&share("sh2"), 8).await.unwrap());
    assert!(s.delete_binding("dev_a", "u3").await.unwrap());
    assert!(s.get_share("sh2").await.unwrap().is_none());
}

/// Bind tokens: single use, bound to their device, expire.
async fn a_bind_token_is_single_use_for_its_device_until_it_expires(s: Store) {
    with_owner(&s).await;
    s.insert_bind_token(&tok("t1", 1000)).await.unwrap();
    s.insert_bind_token(&tok("t2", 1000)).await.unwrap();
    s.insert_bind_token(&tok("t3", 50)).await.unwrap();
    assert!(s
        .take_bind_token("t1", "dev_a", 100)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .take_bind_token("t1", "dev_a", 100)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .take_bind_token("t2", "dev_b", 100)
        .await
        .unwrap()
        .is_none());
    assert!(
        s.take_bind_token("t2", "dev_a", 100)
            .await
            .unwrap()
            .is_none(),
        "consumed by the wrong did"
    );
    assert!(s
        .take_bind_token("t3", "dev_a", 100)
        .await
        .unwrap()
        .is_none());
}

/// Unbinding everyone (owner unbind, factory reset) takes shares and bind tokens too.
async fn unbinding_everyone_takes_shares_and_bind_tokens(s: Store) {
    with_owner(&s).await;
    s.insert_share(&share("sh3")).await.unwrap();
    assert!(s.accept_share(&share("sh3"), 9).await.unwrap());
    s.insert_bind_token(&tok("t4", 1000)).await.unwrap();
    let mut users = s.unbind_all("dev_a").await.unwrap();
    users.sort();
    assert_eq!(users, vec!["u1".to_string(), "u3".to_string()]);
    assert_eq!(s.device_owner("dev_a").await.unwrap(), None);
    assert!(s.get_share("sh3").await.unwrap().is_none());
    assert!(s
        .take_bind_token("t4", "dev_a", 100)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.binding_role("dev_b", "u1").await.unwrap().as_deref(),
        Some("owner")
    );
}

store_cases! {
    a_device_has_one_owner,
    an_accepted_share_binds_until_it_is_deleted,
    a_member_removing_their_binding_removes_the_share,
    a_bind_token_is_single_use_for_its_device_until_it_expires,
    unbinding_everyone_takes_shares_and_bind_tokens,
}
