//! A device's identity as an attacker meets it: registration that neither reveals the passcode
//! nor rotates the secret without proof, its limits, the owner's destructive commands, and the
//! CONNECT replay rule across restarts.

use crate::support::*;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};

/// CONNECT over MQTT 3.1.1 with `(user, pass)`: the CONNACK code, or the refusal's.
async fn connack(srv: &Server, did: &str, user: &str, pass: &str) -> ConnectReturnCode {
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, user, pass), 10);
    v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(a))) => Some(a.code),
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_signed_connect_is_refused_again_after_a_restart() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let ts = now_ms();
    let (u, p) = creds_at(&did, &secret, ts);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::Success
    );
    // `last_seen` is set once the connect's presence committed; the CONNECT's timestamp was
    // queued to the same writer before it, so it is stored too.
    srv.wait_state(&did, |v| v["last_seen"].is_i64()).await;

    let srv = srv.restart(&[QUICK_RECONNECTS]).await;
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword,
        "the same signed CONNECT after a restart"
    );
    let (u_old, p_old) = creds_at(&did, &secret, ts - 1);
    assert_eq!(
        connack(&srv, &did, &u_old, &p_old).await,
        ConnectReturnCode::BadUserNamePassword,
        "an older timestamp after a restart"
    );
    let (u, p) = creds(&did, &secret);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::Success
    );
}
