//! The in-process harness itself: servers sharing this process keep apart (each counts its own
//! metrics, has its own data), and a graceful restart reopens the same data directory.

use crate::support::*;

#[tokio::test]
async fn servers_in_one_process_count_apart_and_restart_on_their_data() {
    let a = Server::start().await;
    let b = Server::start().await;
    let (_, did, _) = a.device().await;
    let (u, p) = creds(&did, "bad");
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&a, &did, &u, &p), 10);
    v4_until(&mut el, |e| e.is_err().then_some(())).await;
    assert_eq!(a.metric(WRONG_SIGNATURE).await, 1.0);
    assert_eq!(b.metric(WRONG_SIGNATURE).await, 0.0);
    let (s, _) = b.admin("GET", &format!("/v1/devices/{did}"), None).await;
    assert_eq!(s, 404, "b has a data directory of its own");

    let a = a.restart(&[]).await;
    assert_eq!(a.state(&did).await["did"], did.as_str());
    assert_eq!(
        a.metric(WRONG_SIGNATURE).await,
        0.0,
        "a restarted server counts afresh, as a new process would"
    );
}
