//! Enterprises: the first owner, invitations, membership changes and the last-owner rule.

use crate::developers::with_developers;
use crate::enterprise;
use rampart_store::*;

/// An invitation to `ent_1` as an observer, from `dev_a`.
pub(crate) fn invite(id: &str, email: &str) -> InviteRow {
    InviteRow {
        invite_id: id.into(),
        enterprise_id: "ent_1".into(),
        email: email.into(),
        role: "observer".into(),
        invited_by: "dev_a".into(),
        created_at: 31,
    }
}

/// Developers `dev_a` and `dev_b`; enterprise `ent_1` created by `dev_a`.
pub(crate) async fn with_enterprise(s: &Store) {
    with_developers(s).await;
    s.insert_enterprise(&EnterpriseRow {
        enterprise_id: "ent_1".into(),
        name: "Acme".into(),
        suspended: false,
        created_by: "dev_a".into(),
        created_at: 30,
    })
    .await
    .unwrap();
}

async fn an_enterprise_starts_with_its_creator_as_owner(s: Store) {
    with_enterprise(&s).await;
    assert_eq!(
        s.member_role("ent_1", "dev_a").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(
        s.get_enterprise("ent_1").await.unwrap().map(|e| e.name),
        Some("Acme".to_string())
    );
}

async fn an_enterprise_without_owner_has_no_members(s: Store) {
    for e in ["ent_k1", "ent_k2"] {
        s.insert_enterprise_without_owner(&enterprise(e))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.insert_enterprise_without_owner(&enterprise("ent_k1"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(s.list_members("ent_k1").await.unwrap().is_empty());
}

/// One invitation per address and enterprise; accepting it once makes a member.
async fn an_invitation_is_accepted_once(s: Store) {
    with_enterprise(&s).await;
    let inv = invite("inv_1", "b@example.com");
    s.insert_invite(&inv).await.unwrap();
    assert!(matches!(
        s.insert_invite(&invite("inv_2", "b@example.com")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.invites_for_email("b@example.com").await.unwrap(),
        vec![inv]
    );
    assert!(s.accept_invite("inv_1", "dev_b", 32).await.unwrap());
    assert!(!s.accept_invite("inv_1", "dev_b", 33).await.unwrap());
    assert!(s.get_invite("inv_1").await.unwrap().is_none());
    let members = s.list_members("ent_1").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.email.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        vec![("a@example.com", "owner"), ("b@example.com", "observer")]
    );
}

async fn the_last_owner_can_neither_leave_nor_step_down(s: Store) {
    with_enterprise(&s).await;
    s.insert_invite(&invite("inv_1", "b@example.com"))
        .await
        .unwrap();
    assert!(s.accept_invite("inv_1", "dev_b", 32).await.unwrap());
    assert_eq!(
        s.change_member("ent_1", "dev_a", Some("admin"))
            .await
            .unwrap(),
        MemberChange::LastOwner
    );
    assert_eq!(
        s.change_member("ent_1", "dev_a", None).await.unwrap(),
        MemberChange::LastOwner
    );
    assert_eq!(
        s.change_member("ent_1", "nobody", None).await.unwrap(),
        MemberChange::NotMember
    );
    assert_eq!(
        s.change_member("ent_1", "dev_b", Some("owner"))
            .await
            .unwrap(),
        MemberChange::Done
    );
    assert_eq!(
        s.change_member("ent_1", "dev_a", Some("admin"))
            .await
            .unwrap(),
        MemberChange::Done
    );
    let m = s.developer_memberships("dev_a").await.unwrap();
    assert_eq!((m.len(), m[0].role.as_str()), (1, "admin"));
}

store_cases! {
    an_enterprise_starts_with_its_creator_as_owner,
    an_enterprise_without_owner_has_no_members,
    an_invitation_is_accepted_once,
    the_last_owner_can_neither_leave_nor_step_down,
}
