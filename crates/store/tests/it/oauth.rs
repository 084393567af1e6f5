//! OAuth2 tables: clients, grants, codes, grant tokens; OIDC login states and links.

use crate::app;
use rampart_store::*;

fn user(id: &str, email: Option<&str>) -> UserRow {
    UserRow {
        user_id: id.into(),
        email: email.map(Into::into),
        phone: None,
        password_hash: "!oidc".into(),
        active: true,
        app_id: "oapp".into(),
        created_at: 10,
        failed_count: 0,
        first_failed_at: 0,
        locked_until: 0,
        lockouts: 0,
    }
}

fn client() -> OAuthClientRow {
    OAuthClientRow {
        client_id: "rcl_1".into(),
        name: "Assistant".into(),
        secret_hash: "sh".into(),
        redirect_uris: "[\"https://a.example/cb\"]".into(),
        scopes: "devices:read".into(),
        owner: "admin:bootstrap".into(),
        created_at: 1,
        is_public: false,
        updated_at: 0,
    }
}

fn grant(id: &str, user: &str) -> OAuthGrantRow {
    OAuthGrantRow {
        grant_id: id.into(),
        user_id: user.into(),
        client_id: "rcl_1".into(),
        scope: "devices:read".into(),
        active: false,
        revoked: false,
        created_at: 100,
        expires_at: 10_000,
    }
}

fn code(hash: &str, grant: &str) -> OAuthCodeRow {
    OAuthCodeRow {
        code_hash: hash.into(),
        grant_id: grant.into(),
        client_id: "rcl_1".into(),
        redirect_uri: "https://a.example/cb".into(),
        code_challenge: "ch".into(),
        used: false,
        expires_at: 700,
        created_at: 100,
    }
}

fn link(sub: &str, user: &str) -> OidcLinkRow {
    OidcLinkRow {
        provider: "google".into(),
        subject: sub.into(),
        user_id: user.into(),
        email: None,
        created_at: 5,
    }
}

/// App `oapp`, users `ou1` (with an e-mail) and `ou2` (without), client `rcl_1`.
async fn with_client(s: &Store) {
    s.insert_app(&app("oapp", "[]")).await.unwrap();
    s.insert_user(&user("ou1", Some("ou1@x.io"))).await.unwrap();
    s.insert_user(&user("ou2", None)).await.unwrap();
    s.insert_oauth_client(&client()).await.unwrap();
}

/// [`with_client`] and grant `g1` of `ou1` with its code `c1`, redeemed.
async fn with_redeemed_grant(s: &Store) {
    with_client(s).await;
    s.insert_oauth_grant(&grant("g1", "ou1"), &code("c1", "g1"))
        .await
        .unwrap();
    assert!(matches!(
        s.redeem_oauth_code("c1").await.unwrap(),
        CodeUse::Fresh(_)
    ));
}

async fn oauth_clients_conflict_on_the_same_id(s: Store) {
    with_client(&s).await;
    assert!(matches!(
        s.insert_oauth_client(&client()).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_oauth_client("rcl_1").await.unwrap(), Some(client()));
    assert_eq!(s.get_oauth_client("rcl_2").await.unwrap(), None);
}

/// A grant and its code; the code is spent exactly once.
async fn an_authorisation_code_is_redeemed_once(s: Store) {
    with_client(&s).await;
    s.insert_oauth_grant(&grant("g1", "ou1"), &code("c1", "g1"))
        .await
        .unwrap();
    // a colliding code leaves no grant behind
    assert!(matches!(
        s.insert_oauth_grant(&grant("g9", "ou1"), &code("c1", "g9"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_oauth_grant("g9").await.unwrap(), None);
    match s.redeem_oauth_code("c1").await.unwrap() {
        CodeUse::Fresh(r) => assert_eq!((r.grant_id.as_str(), r.used), ("g1", true)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.redeem_oauth_code("c1").await.unwrap(),
        CodeUse::Reused(_)
    ));
    assert_eq!(s.redeem_oauth_code("nope").await.unwrap(), CodeUse::Invalid);
}

/// Tokens: not listed before activation; access lookups honour expiry and revocation; a refresh
/// token is spent once; revocation kills every token at once and stops new ones.
async fn grant_tokens_honour_expiry_and_revocation(s: Store) {
    with_redeemed_grant(&s).await;
    assert_eq!(s.list_oauth_grants("ou1", 200, 0, 10).await.unwrap().1, 0);
    assert!(s
        .add_oauth_tokens("g1", "devices:read", ("a1", 500), ("r1", 5_000), 200)
        .await
        .unwrap());
    let (page, total) = s.list_oauth_grants("ou1", 200, 0, 10).await.unwrap();
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(
        (page[0].client_name.as_str(), page[0].scope.as_str()),
        ("Assistant", "devices:read")
    );
    assert_eq!(s.list_oauth_grants("ou2", 200, 0, 10).await.unwrap().1, 0);
    let a = s.oauth_access("a1", 300).await.unwrap().unwrap();
    assert_eq!(
        (a.user_id.as_str(), a.client_id.as_str(), a.kind.as_str()),
        ("ou1", "rcl_1", "access")
    );
    assert!(s.oauth_access("a1", 500).await.unwrap().is_none());
    assert!(s.oauth_access("r1", 300).await.unwrap().is_none());
    // refresh: spent once
    assert!(s.spend_oauth_refresh("r1", 300).await.unwrap());
    assert!(!s.spend_oauth_refresh("r1", 300).await.unwrap());
    assert!(s.oauth_token("r1").await.unwrap().unwrap().used);
    assert!(s
        .add_oauth_tokens("g1", "devices:read", ("a2", 900), ("r2", 5_000), 300)
        .await
        .unwrap());
    assert!(s.delete_oauth_access("a2").await.unwrap());
    assert!(s.oauth_access("a2", 400).await.unwrap().is_none());
    assert!(s
        .add_oauth_tokens("g1", "devices:read", ("a3", 900), ("r3", 5_000), 300)
        .await
        .unwrap());
    // revocation kills every token at once and stops new ones
    assert!(s.revoke_oauth_grant("g1").await.unwrap());
    assert!(!s.revoke_oauth_grant("g1").await.unwrap());
    assert!(s.oauth_access("a3", 400).await.unwrap().is_none());
    assert!(s.oauth_token("r3").await.unwrap().unwrap().grant_revoked);
    assert!(!s
        .add_oauth_tokens("g1", "devices:read", ("a4", 900), ("r4", 5_000), 300)
        .await
        .unwrap());
    assert!(s.oauth_token("a4").await.unwrap().is_none());
    assert_eq!(s.list_oauth_grants("ou1", 400, 0, 10).await.unwrap().1, 0);
}

/// Purge forgets expired tokens and codes. A revoked grant keeps its row while a token of it
/// lives; an unexchanged one goes with its code.
async fn purge_forgets_expired_tokens_codes_and_grants(s: Store) {
    with_redeemed_grant(&s).await;
    assert!(s
        .add_oauth_tokens("g1", "devices:read", ("a3", 900), ("r3", 5_000), 300)
        .await
        .unwrap());
    assert!(s.revoke_oauth_grant("g1").await.unwrap());
    s.insert_oauth_grant(&grant("g2", "ou1"), &code("c2", "g2"))
        .await
        .unwrap();
    assert!(s.purge_oauth(800).await.unwrap() >= 2);
    assert_eq!(s.redeem_oauth_code("c1").await.unwrap(), CodeUse::Invalid);
    assert!(s.get_oauth_grant("g1").await.unwrap().is_some());
    assert!(s.get_oauth_grant("g2").await.unwrap().is_none());
    s.purge_oauth(6_000).await.unwrap();
    assert!(s.get_oauth_grant("g1").await.unwrap().is_none());
}

/// No token outlives its grant's absolute end; a password reset revokes every grant of the user.
async fn no_token_outlives_its_grant_and_a_reset_revokes_every_grant(s: Store) {
    with_client(&s).await;
    s.insert_oauth_grant(&grant("g3", "ou2"), &code("c3", "g3"))
        .await
        .unwrap();
    assert!(s
        .add_oauth_tokens("g3", "devices:read", ("a5", 20_000), ("r5", 20_000), 9_000)
        .await
        .unwrap());
    assert!(s.oauth_access("a5", 9_999).await.unwrap().is_some());
    assert!(s.oauth_access("a5", 10_000).await.unwrap().is_none());
    assert_eq!(s.revoke_user_oauth_grants("ou2").await.unwrap(), 1);
    assert_eq!(s.revoke_user_oauth_grants("ou2").await.unwrap(), 0);
    assert!(s.oauth_access("a5", 9_999).await.unwrap().is_none());
}

/// OIDC: states are taken once.
async fn an_oidc_state_is_taken_once(s: Store) {
    s.insert_app(&app("oapp", "[]")).await.unwrap();
    let st = OidcStateRow {
        state_hash: "sh1".into(),
        provider: "google".into(),
        app_id: "oapp".into(),
        nonce: "n".into(),
        verifier_enc: vec![1, 2, 3],
        redirect_uri: "https://r.example/cb".into(),
        expires_at: 1_000,
        created_at: 1,
        browser_hash: "bh".into(),
    };
    s.insert_oidc_state(&st).await.unwrap();
    assert_eq!(s.take_oidc_state("sh1").await.unwrap(), Some(st));
    assert_eq!(s.take_oidc_state("sh1").await.unwrap(), None);
}

/// OIDC links are unique per (provider, subject).
async fn an_oidc_link_is_unique_per_provider_and_subject(s: Store) {
    with_client(&s).await;
    s.insert_oidc_link(&link("s1", "ou2")).await.unwrap();
    assert!(matches!(
        s.insert_oidc_link(&link("s1", "ou1")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_oidc_link("google", "s1")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "ou2"
    );
    assert_eq!(s.get_oidc_link("other", "s1").await.unwrap(), None);
}

/// A new user and its link land together, or not at all.
async fn an_oidc_user_and_its_link_land_together(s: Store) {
    with_client(&s).await;
    s.insert_oidc_user(&user("ou3", Some("ou3@x.io")), &link("s3", "ou3"))
        .await
        .unwrap();
    assert!(s.get_user("ou3").await.unwrap().unwrap().active);
    assert!(matches!(
        s.insert_oidc_user(&user("ou4", None), &link("s3", "ou4"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_user("ou4").await.unwrap(), None);
}

/// Client management: listing by owner, updates, secrets, deletion with its grants (counting
/// only the live ones).
async fn a_client_is_managed_by_its_owner_and_deleted_with_its_grants(s: Store) {
    with_client(&s).await;
    let mut pc = client();
    pc.client_id = "rcl_pub".into();
    pc.secret_hash = String::new();
    pc.is_public = true;
    pc.owner = "developer:dev_1".into();
    pc.created_at = 2;
    s.insert_oauth_client(&pc).await.unwrap();
    let (all, n) = s.list_oauth_clients(None, 0, 10).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(all[1], pc);
    let (mine, n) = s
        .list_oauth_clients(Some("developer:dev_1"), 0, 10)
        .await
        .unwrap();
    assert_eq!((n, mine[0].client_id.as_str()), (1, "rcl_pub"));
    assert_eq!(s.list_oauth_clients(Some("x:y"), 0, 10).await.unwrap().1, 0);
    assert!(s
        .update_oauth_client("rcl_pub", "Renamed", "[\"https://b.example/cb\"]", 50)
        .await
        .unwrap());
    assert!(!s.update_oauth_client("nope", "x", "[]", 50).await.unwrap());
    let got = s.get_oauth_client("rcl_pub").await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.updated_at), ("Renamed", 50));
    assert!(
        !s.set_oauth_client_secret("rcl_pub", "h2", 60)
            .await
            .unwrap(),
        "a public client has no secret"
    );
    assert!(s.set_oauth_client_secret("rcl_1", "h2", 60).await.unwrap());
    assert_eq!(
        s.get_oauth_client("rcl_1")
            .await
            .unwrap()
            .unwrap()
            .secret_hash,
        "h2"
    );
    // a revoked grant is not counted as live
    s.insert_oauth_grant(&grant("g3", "ou2"), &code("c3", "g3"))
        .await
        .unwrap();
    assert!(s
        .add_oauth_tokens("g3", "devices:read", ("a5", 20_000), ("r5", 20_000), 100)
        .await
        .unwrap());
    assert_eq!(s.revoke_user_oauth_grants("ou2").await.unwrap(), 1);
    s.insert_oauth_grant(&grant("g5", "ou1"), &code("c5", "g5"))
        .await
        .unwrap();
    assert!(s
        .add_oauth_tokens("g5", "devices:read", ("a6", 20_000), ("r6", 20_000), 100)
        .await
        .unwrap());
    assert_eq!(s.delete_oauth_client("rcl_1").await.unwrap(), Some(1));
    assert_eq!(s.delete_oauth_client("rcl_1").await.unwrap(), None);
    assert!(s.get_oauth_client("rcl_1").await.unwrap().is_none());
    assert!(s.oauth_token("a6").await.unwrap().is_none());
    assert!(s.get_oauth_grant("g5").await.unwrap().is_none());
    assert!(s.get_oauth_grant("g3").await.unwrap().is_none());
}

store_cases! {
    oauth_clients_conflict_on_the_same_id,
    an_authorisation_code_is_redeemed_once,
    grant_tokens_honour_expiry_and_revocation,
    purge_forgets_expired_tokens_codes_and_grants,
    no_token_outlives_its_grant_and_a_reset_revokes_every_grant,
    an_oidc_state_is_taken_once,
    an_oidc_link_is_unique_per_provider_and_subject,
    an_oidc_user_and_its_link_land_together,
    a_client_is_managed_by_its_owner_and_deleted_with_its_grants,
}
