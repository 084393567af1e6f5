//! Accounts: apps, users, one-time codes, lock state and token families.

use crate::{app, user};
use rampart_store::*;

/// App `app1`; users `u1` (a@x.io), `u2` (+15550001) and `u3` (c@x.io).
pub(crate) async fn with_users(s: &Store) {
    s.insert_app(&app("app1", "[\"accpk\"]")).await.unwrap();
    s.insert_user(&user("u1", "app1", Some("a@x.io"), None))
        .await
        .unwrap();
    s.insert_user(&user("u2", "app1", None, Some("+15550001")))
        .await
        .unwrap();
    s.insert_user(&user("u3", "app1", Some("c@x.io"), None))
        .await
        .unwrap();
}

fn code(hash: &str) -> CodeRow {
    CodeRow {
        recipient: "a@x.io".into(),
        purpose: "activate".into(),
        code_hash: hash.into(),
        expires_at: 1000,
        attempts: 0,
        created_at: 1,
    }
}

async fn apps_conflict_on_the_same_id(s: Store) {
    let a = app("app1", "[\"accpk\"]");
    s.insert_app(&a).await.unwrap();
    assert!(matches!(s.insert_app(&a).await, Err(StoreError::Conflict)));
    assert_eq!(s.get_app("app1").await.unwrap(), Some(a));
    assert_eq!(s.get_app("nope").await.unwrap(), None);
}

/// E-mail and phone are unique; several users may lack one of them.
async fn user_emails_and_phones_are_unique(s: Store) {
    with_users(&s).await;
    assert!(matches!(
        s.insert_user(&user("u4", "app1", Some("a@x.io"), None))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        s.insert_user(&user("u5", "app1", None, Some("+15550001")))
            .await,
        Err(StoreError::Conflict)
    ));
    let u = s.find_user(Some("a@x.io"), None).await.unwrap().unwrap();
    assert_eq!((u.user_id.as_str(), u.active), ("u1", false));
    assert_eq!(
        s.find_user(None, Some("+15550001"))
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "u2"
    );
    assert!(s.find_user(None, None).await.unwrap().is_none());
}

async fn a_user_is_activated_and_keeps_its_lock_state(s: Store) {
    with_users(&s).await;
    s.activate_user("u1").await.unwrap();
    let lock = LockState {
        failed_count: 3,
        first_failed_at: 100,
        locked_until: 900,
        lockouts: 2,
    };
    s.set_lock_state("u1", lock).await.unwrap();
    let u = s.get_user("u1").await.unwrap().unwrap();
    assert!(u.active);
    assert_eq!(
        (
            u.failed_count,
            u.first_failed_at,
            u.locked_until,
            u.lockouts
        ),
        (3, 100, 900, 2)
    );
    s.set_password("u1", "$argon2id$new").await.unwrap();
    let u = s.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (u.password_hash.as_str(), u.locked_until),
        ("$argon2id$new", 0)
    );
}

/// One-time codes: tries claimed up to a maximum, expiry, a new code replacing the old one.
async fn a_one_time_code_counts_its_tries_and_expires(s: Store) {
    s.put_code(&code("h1")).await.unwrap();
    let claim = |max: i64, now: i64| s.claim_code_attempt("a@x.io", "activate", max, now);
    assert_eq!(claim(5, 10).await.unwrap().as_deref(), Some("h1"));
    assert_eq!(claim(5, 10).await.unwrap().as_deref(), Some("h1"));
    assert_eq!(claim(2, 10).await.unwrap(), None, "two tries claimed");
    assert_eq!(claim(5, 1000).await.unwrap(), None, "expired");
    let c = s.get_code("a@x.io", "activate").await.unwrap().unwrap();
    assert_eq!(c.attempts, 2);
    s.put_code(&code("h2")).await.unwrap();
    let c = s.get_code("a@x.io", "activate").await.unwrap().unwrap();
    assert_eq!((c.code_hash.as_str(), c.attempts), ("h2", 0));
    assert!(s
        .get_code("a@x.io", "password_reset")
        .await
        .unwrap()
        .is_none());
}

/// A code is spent once, and only while it is still the code that was matched.
async fn a_one_time_code_is_taken_once_while_it_matches(s: Store) {
    s.put_code(&code("h1")).await.unwrap();
    s.put_code(&code("h2")).await.unwrap();
    assert!(!s.take_code("a@x.io", "activate", "h1").await.unwrap());
    assert!(s.take_code("a@x.io", "activate", "h2").await.unwrap());
    assert!(!s.take_code("a@x.io", "activate", "h2").await.unwrap());
    s.put_code(&code("h1")).await.unwrap();
    s.delete_code("a@x.io", "activate").await.unwrap();
    assert!(s.get_code("a@x.io", "activate").await.unwrap().is_none());
    assert_eq!(
        s.claim_code_attempt("a@x.io", "activate", 5, 10)
            .await
            .unwrap(),
        None,
        "no code"
    );
}

/// 80 concurrent tries at one code: the store hands its hash to exactly five of them, so no
/// more than five guesses can ever be compared.
async fn concurrent_code_tries_are_claimed_at_most_five_times(s: Store) {
    s.put_code(&CodeRow {
        recipient: "race@x.io".into(),
        purpose: "activate".into(),
        code_hash: "hr".into(),
        expires_at: 10_000,
        attempts: 0,
        created_at: 1,
    })
    .await
    .unwrap();
    let tries: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_code_attempt("race@x.io", "activate", 5, 100)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for t in tries {
        if t.await.unwrap().is_some() {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 5, "tries handed the code's hash");
    let c = s.get_code("race@x.io", "activate").await.unwrap().unwrap();
    assert_eq!(c.attempts, 5);
    s.delete_code("race@x.io", "activate").await.unwrap();
    assert!(s.get_code("race@x.io", "activate").await.unwrap().is_none());
}

/// 80 concurrent read-modify-writes of one user's lockout state: each sees the previous one's
/// write (none is lost).
async fn concurrent_failed_logins_are_all_counted(s: Store) {
    s.insert_app(&app("app1", "[]")).await.unwrap();
    s.insert_user(&user("race_u", "app1", Some("race_u@x.io"), None))
        .await
        .unwrap();
    let bump = |mut l: LockState| {
        l.failed_count += 1;
        Some(l)
    };
    let claims: Vec<_> = (0..80)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.update_lock_state("race_u", bump).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for c in claims {
        seen.push(c.await.unwrap().unwrap().failed_count);
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..80).collect::<Vec<i64>>(),
        "each claim saw the one before"
    );
    let u = s.get_user("race_u").await.unwrap().unwrap();
    assert_eq!(u.failed_count, 80);
    // `None` leaves the state; an unknown user is `None`
    let seen = s.update_lock_state("race_u", |_| None).await.unwrap();
    assert_eq!(seen.map(|l| l.failed_count), Some(80));
    assert_eq!(
        s.get_user("race_u").await.unwrap().unwrap().failed_count,
        80
    );
    assert!(s.update_lock_state("nobody", bump).await.unwrap().is_none());
}

/// Sessions: access lookup, rotation, reuse, revocation.
async fn a_session_rotates_reports_reuse_and_is_revoked(s: Store) {
    with_users(&s).await;
    s.create_session("f1", "u1", "app1", ("acc1", 500), ("ref1", 5000), 1)
        .await
        .unwrap();
    let sess = s.access_session("acc1", 100).await.unwrap().unwrap();
    assert_eq!(
        (
            sess.user_id.as_str(),
            sess.family_id.as_str(),
            sess.app_id.as_str()
        ),
        ("u1", "f1", "app1")
    );
    assert!(
        s.access_session("acc1", 500).await.unwrap().is_none(),
        "expired"
    );
    assert!(
        s.access_session("ref1", 100).await.unwrap().is_none(),
        "kind"
    );
    assert!(
        matches!(s.use_refresh("ref1", 100).await.unwrap(), RefreshUse::Rotated(r) if r.family_id == "f1")
    );
    s.add_tokens("f1", ("acc2", 800), ("ref2", 5000), 100)
        .await
        .unwrap();
    assert!(
        matches!(s.use_refresh("ref1", 101).await.unwrap(), RefreshUse::Reused(r) if r.family_id == "f1")
    );
    assert_eq!(
        s.use_refresh("nope", 101).await.unwrap(),
        RefreshUse::Invalid
    );
    assert!(s.revoke_family("f1").await.unwrap());
    assert!(!s.revoke_family("f1").await.unwrap());
    assert_eq!(
        s.use_refresh("ref2", 102).await.unwrap(),
        RefreshUse::Invalid
    );
    assert!(s.access_session("acc2", 102).await.unwrap().is_none());
}

/// An expired refresh token is neither rotated nor reported as reuse.
async fn an_expired_refresh_token_is_invalid(s: Store) {
    with_users(&s).await;
    s.create_session("f2", "u1", "app1", ("acc3", 500), ("ref3", 200), 1)
        .await
        .unwrap();
    assert_eq!(
        s.use_refresh("ref3", 300).await.unwrap(),
        RefreshUse::Invalid
    );
}

/// A user's families are revoked, all or all but one; revoked ones are not counted again.
async fn a_users_families_are_revoked_all_or_all_but_one(s: Store) {
    with_users(&s).await;
    s.create_session("f1", "u1", "app1", ("acc1", 500), ("ref1", 5000), 1)
        .await
        .unwrap();
    assert!(s.revoke_family("f1").await.unwrap());
    s.create_session("f2", "u1", "app1", ("acc3", 500), ("ref3", 200), 1)
        .await
        .unwrap();
    s.create_session("f3", "u1", "app1", ("acc4", 500), ("ref4", 5000), 1)
        .await
        .unwrap();
    assert_eq!(s.revoke_user_families("u1", Some("f3")).await.unwrap(), 1);
    assert!(s.access_session("acc4", 100).await.unwrap().is_some());
    assert_eq!(s.revoke_user_families("u1", None).await.unwrap(), 1);
    assert!(s.access_session("acc4", 100).await.unwrap().is_none());
}

async fn expired_tokens_are_purged(s: Store) {
    with_users(&s).await;
    s.create_session("f1", "u1", "app1", ("acc1", 500), ("ref1", 5000), 1)
        .await
        .unwrap();
    s.add_tokens("f1", ("acc2", 800), ("ref2", 5000), 100)
        .await
        .unwrap();
    s.create_session("f2", "u1", "app1", ("acc3", 500), ("ref3", 200), 1)
        .await
        .unwrap();
    s.create_session("f3", "u1", "app1", ("acc4", 500), ("ref4", 5000), 1)
        .await
        .unwrap();
    assert!(s.purge_tokens(1000).await.unwrap() >= 4);
}

store_cases! {
    apps_conflict_on_the_same_id,
    user_emails_and_phones_are_unique,
    a_user_is_activated_and_keeps_its_lock_state,
    a_one_time_code_counts_its_tries_and_expires,
    a_one_time_code_is_taken_once_while_it_matches,
    concurrent_code_tries_are_claimed_at_most_five_times,
    concurrent_failed_logins_are_all_counted,
    a_session_rotates_reports_reuse_and_is_revoked,
    an_expired_refresh_token_is_invalid,
    a_users_families_are_revoked_all_or_all_but_one,
    expired_tokens_are_purged,
}
