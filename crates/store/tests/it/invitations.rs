//! Shares offered to an address with no account, then claimed by the account made for it.

use crate::{app, devices_of, user};
use rampart_store::*;

fn invitation() -> ShareInvitationRow {
    ShareInvitationRow {
        share_id: "sh_inv1".into(),
        did: "invd1".into(),
        owner_id: "u_inv_owner".into(),
        email: Some("new@x.io".into()),
        phone: None,
        role: "member".into(),
        created_at: 5,
    }
}

/// Device `invd1`, its owner `u_inv_owner` and an invitation of `new@x.io` to it.
async fn with_invitation(s: &Store) {
    devices_of(s, "invpk", &[("invd1", "invhw1")]).await;
    s.insert_app(&app("app1", "[]")).await.unwrap();
    s.insert_user(&user("u_inv_owner", "app1", Some("inv-owner@x.io"), None))
        .await
        .unwrap();
    s.insert_share_invitation(&invitation()).await.unwrap();
}

async fn an_invitation_is_found_by_its_address(s: Store) {
    with_invitation(&s).await;
    assert_eq!(
        s.find_share_invitation("invd1", Some("new@x.io"), None)
            .await
            .unwrap(),
        Some(invitation())
    );
    assert!(s
        .find_share_invitation("invd1", None, Some("+15550000"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.list_share_invitations_of_device("invd1").await.unwrap(),
        vec![invitation()]
    );
}

/// The account made for the address claims the invitation as a pending share, once.
async fn an_invitation_becomes_a_pending_share_of_the_new_account(s: Store) {
    with_invitation(&s).await;
    s.insert_user(&user("u_inv_new", "app1", Some("new@x.io"), None))
        .await
        .unwrap();
    let claimed = s
        .claim_share_invitations("u_inv_new", Some("new@x.io"), None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].share_id.as_str(), claimed[0].status.as_str()),
        ("sh_inv1", "pending")
    );
    assert_eq!(
        s.get_share("sh_inv1").await.unwrap(),
        Some(claimed[0].clone())
    );
    assert!(s
        .list_share_invitations_of_device("invd1")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_share_invitations("u_inv_new", Some("new@x.io"), None)
        .await
        .unwrap()
        .is_empty());
}

/// Revoked before anyone signs up.
async fn an_invitation_is_revoked_once(s: Store) {
    with_invitation(&s).await;
    s.insert_share_invitation(&ShareInvitationRow {
        share_id: "sh_inv2".into(),
        phone: Some("+15550001".into()),
        email: None,
        ..invitation()
    })
    .await
    .unwrap();
    assert!(s.delete_share_invitation("invd1", "sh_inv2").await.unwrap());
    assert!(!s.delete_share_invitation("invd1", "sh_inv2").await.unwrap());
}

store_cases! {
    an_invitation_is_found_by_its_address,
    an_invitation_becomes_a_pending_share_of_the_new_account,
    an_invitation_is_revoked_once,
}
