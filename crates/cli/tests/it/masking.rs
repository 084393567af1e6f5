//! Masking: the server's log, at trace level for every crate, never holds a secret, token,
//! password, code or e-mail address that a whole user and device flow created.

use crate::accounts::{Dev, Env, PW};
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn nothing_secret_reaches_the_log_even_at_trace_level() {
    let srv = Server::process_logging(&[("RUST_LOG", "trace")]).await;
    let mut env = Env::on(srv).await;
    let (did, secret, passcode) = env.device().await;

    // Sign-up with its activation code, login, refresh.
    let email = format!("ada-{}@example.com", nonce());
    let (st, v) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let code = env.code(&email, "activate", 0).await;
    let (st, v) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"email": email, "code": code})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (access, refresh) = env.login(&email, PW).await;
    let (st, v) = env
        .call(
            "POST",
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let access2 = v["access_token"].as_str().unwrap().to_owned();
    let refresh2 = v["refresh_token"].as_str().unwrap().to_owned();

    // A failed login naming an address with no account.
    let stranger = format!("eve-{}@example.com", nonce());
    let (st, _) = env.try_login(&stranger, "not a password at all").await;
    assert_eq!(st, 401);

    // Bind, share, live push with the token in the query string, report, command.
    let (st, v) = env.bind(&access2, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    let bob_email = format!("bob-{}@example.com", nonce());
    let (bob, _) = env.user(&bob_email).await;
    env.share(&access2, &did, &bob_email, &bob, "guest").await;
    let mut ws = env.ws(&access2, true).await;
    let mut dev = Dev::connect(&env.srv, &did, &secret).await;
    dev.report(json!({"temp": 21.5})).await;
    assert_eq!(ws.next_kind("status").await["kind"], "status");
    let (st, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(&access2),
            Some(json!({"set": {"power": true}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Erasure of the guest's account, then of the device.
    let (st, v) = env
        .call(
            "DELETE",
            "/v1/users/me",
            Some(&bob),
            Some(json!({"password": PW})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    drop(dev);
    let (st, v) = env
        .srv
        .admin("DELETE", &format!("/v1/devices/{did}"), None)
        .await;
    assert_eq!(st, 200, "{v}");

    env.srv.terminate_and_wait().await;
    let log = env.srv.log_text();
    assert!(
        log.lines().filter(|l| l.contains("TRACE")).count() > 100,
        "the log is at trace level"
    );
    let secrets = [
        ("the admin token", ADMIN),
        ("the product secret", env.ps.as_str()),
        ("the device secret", secret.as_str()),
        ("the passcode", passcode.as_str()),
        ("the password", PW),
        ("the activation code", code.as_str()),
        ("an access token", access.as_str()),
        ("an access token", access2.as_str()),
        ("a refresh token", refresh.as_str()),
        ("a refresh token", refresh2.as_str()),
        ("the guest's access token", bob.as_str()),
        ("an e-mail address", email.as_str()),
        ("an e-mail address", bob_email.as_str()),
        ("an e-mail address", stranger.as_str()),
    ];
    let mut found = Vec::new();
    for (what, s) in secrets {
        if let Some(line) = log.lines().find(|l| l.contains(s)) {
            found.push(format!(
                "{what}: {}",
                line.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(found.is_empty(), "in the log:\n{}", found.join("\n"));
}
