//! Stock MQTT clients: Eclipse Paho with its own automatic reconnect, signing a fresh password
//! for every connection (`examples/clients/paho_device.py`), rumqttc doing the same
//! (`examples/clients/rumqttc_device.rs`, compiled here as a module and run), and firmware with a
//! static user name and password on products that allow it.

#[path = "../../../../examples/clients/rumqttc_device.rs"]
#[allow(dead_code)]
mod rumqttc_device;

use crate::mqtt::{raw, v4_refusal};
use crate::mqtt_conformance::paho_python;
use crate::support::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The example client, running until dropped; its JSON event lines arrive on `events`.
struct PahoDevice {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Drop for PahoDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PahoDevice {
    fn start(python: &str, srv: &Server, did: &str, secret: &str, statik: bool) -> PahoDevice {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/clients/paho_device.py"
        );
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg("localhost")
            .arg(srv.mqtt_tls.to_string())
            .arg(srv.ca_path())
            .args([did, secret])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if statik {
            cmd.arg("--static");
        }
        let mut child = cmd.spawn().expect("run the Paho example");
        let out = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        PahoDevice { child, events }
    }

    /// Wait (30 s at most) for an event `f` accepts; the events before it are returned too.
    async fn until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(v) => {
                    let done = f(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no {what} from the Paho example; saw {seen:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("the Paho example exited before {what}; saw {seen:?}")
                }
            }
        }
    }
}

fn connected_ok(v: &Value) -> bool {
    v["event"] == "connected" && v["rc"] == 0
}

/// Drop the device's connection (disable it: DISCONNECT, refusals while disabled), then let it
/// back in.
async fn drop_and_readmit(srv: &Server, did: &str) {
    let (s, v) = srv
        .admin("POST", &format!("/v1/devices/{did}/disable"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    srv.wait_state(did, |v| v["online"] == false).await;
    let (s, v) = srv
        .admin("POST", &format!("/v1/devices/{did}/enable"), None)
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn static_product(srv: &Server, allow: bool) -> (String, String) {
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Plug on stock firmware",
                "identity": {"dynamic_registration": true, "static_password": allow},
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    let (s, v) = srv.admin("GET", &format!("/v1/products/{pk}"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["identity"]["static_password"], json!(allow), "{v}");
    (pk, ps)
}

#[tokio::test]
async fn paho_signs_a_fresh_password_for_every_reconnect() {
    let Some(python) = paho_python("paho_signs_a_fresh_password_for_every_reconnect") else {
        return;
    };
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let paho = PahoDevice::start(&python, &srv, &did, &secret, false);
    paho.until("first connection", connected_ok).await;
    srv.wait_state(&did, |v| v["state"]["power"] == true).await;

    drop_and_readmit(&srv, &did).await;
    let seen = paho.until("a reconnect by itself", connected_ok).await;
    assert!(
        seen.iter().any(|v| v["event"] == "disconnected"),
        "{seen:?}"
    );
    srv.wait_state(&did, |v| v["online"] == true).await;
    // Every reconnect carried a fresh timestamp: none was refused as a replay.
    assert_eq!(
        srv.metric(r#"rampart_auth_refusals_total{listener="mqtt_tls",reason="replayed"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_static_password_connects_stock_firmware_where_the_product_allows_it() {
    let Some(python) = paho_python("a_static_password_connects_stock_firmware") else {
        return;
    };
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (pk, ps) = static_product(&srv, true).await;
    let (did, secret, _) = srv.register(&pk, &ps, "plug-0001").await;
    let paho = PahoDevice::start(&python, &srv, &did, &secret, true);
    paho.until("first connection", connected_ok).await;
    srv.wait_state(&did, |v| v["state"]["power"] == true).await;
    drop_and_readmit(&srv, &did).await;
    paho.until("a reconnect by itself", connected_ok).await;
    srv.wait_state(&did, |v| v["online"] == true).await;
    drop(paho);
    srv.wait_state(&did, |v| v["online"] == false).await;

    let refusals = |listener: &str, reason: &str| {
        format!(r#"rampart_auth_refusals_total{{listener="{listener}",reason="{reason}"}}"#)
    };
    // Over plain TCP a static password is refused even for this product (not authorised: the
    // secret was right, the listener is not).
    let (_, connack) =
        raw::connect_with(&srv, &raw::connect_v5_keepalive(&did, &did, &secret, 30)).await;
    assert_eq!(raw::body(&connack)[..2], [0x00, 0x87], "{connack:02x?}");
    assert_eq!(
        srv.metric(&refusals("mqtt", "static_password_off")).await,
        1.0
    );
    // A wrong static password: the uniform bad-credentials answer.
    assert_eq!(
        v4_refusal(&srv, &did, &did, "wrong").await,
        rumqttc::ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(srv.metric(&refusals("mqtt_tls", "wrong_secret")).await, 1.0);

    // A product without the opt-in refuses its devices' static passwords, even over TLS.
    let (pk, ps) = static_product(&srv, false).await;
    let (did, secret, _) = srv.register(&pk, &ps, "plug-0002").await;
    assert_eq!(
        v4_refusal(&srv, &did, &did, &secret).await,
        rumqttc::ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        srv.metric(&refusals("mqtt_tls", "static_password_off"))
            .await,
        1.0
    );
}

#[tokio::test]
async fn rumqttc_example_signs_a_fresh_password_for_every_reconnect() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let ca = std::fs::read(srv.ca_path()).unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<String>();
    let device = {
        let (did, secret, port) = (did.clone(), secret.clone(), srv.mqtt_tls);
        tokio::spawn(async move {
            rumqttc_device::run("localhost", port, ca, &did, &secret, |e| {
                let _ = tx.send(e.to_owned());
            })
            .await
        })
    };
    let next = async |events: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an event from the rumqttc example")
            .unwrap()
    };
    assert_eq!(next(&mut events).await, "connected");
    srv.wait_state(&did, |v| v["state"]["power"] == true).await;
    drop_and_readmit(&srv, &did).await;
    // Dropped, refused while disabled, then back by itself.
    assert!(next(&mut events).await.starts_with("disconnected"));
    loop {
        if next(&mut events).await == "connected" {
            break;
        }
    }
    srv.wait_state(&did, |v| v["online"] == true).await;
    device.abort();
    assert_eq!(
        srv.metric(r#"rampart_auth_refusals_total{listener="mqtt_tls",reason="replayed"}"#)
            .await,
        0.0
    );
}

/// An existing product opts in later: `PUT /v1/products/{key}/identity`; the next CONNECT with a
/// static password is accepted. Audited.
#[tokio::test]
async fn static_passwords_can_be_turned_on_for_an_existing_product() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (pk, ps) = static_product(&srv, false).await;
    let (did, secret, _) = srv.register(&pk, &ps, "plug-0003").await;
    let connack = async || {
        let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &did, &secret), 10);
        v4_until(&mut el, |e| match e {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Some(Err(code)),
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Some(Ok(())),
            _ => None,
        })
        .await
    };
    assert_eq!(
        connack().await,
        Err(rumqttc::ConnectReturnCode::NotAuthorized)
    );
    let path = format!("/v1/products/{pk}/identity");
    let (s, v) = srv
        .admin(
            "PUT",
            &path,
            Some(json!({"dynamic_registration": true, "static_password": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["identity"],
        json!({"dynamic_registration": true, "allowlist": false, "static_password": true,
            "x509": false, "x509_jit": false, "allow_rsa1024": false, "secure_session": false})
    );
    // A mode that needs another is refused with the reason.
    let (s, v) = srv
        .admin("PUT", &path, Some(json!({"x509_jit": true})))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    assert_eq!(connack().await, Ok(()));
    // Bad input and unknown products get our errors.
    let (s, v) = srv
        .admin("PUT", &path, Some(json!({"static_passwords": true})))
        .await;
    assert_error(s, &v, 400, "INVALID_JSON");
    let (s, v) = srv
        .admin(
            "PUT",
            "/v1/products/nosuchproduct000/identity",
            Some(json!({})),
        )
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    let store = rampart_store::Store::open(&url).await.unwrap();
    let rows = store
        .list_audit(Some("product.identity"), 10)
        .await
        .unwrap();
    store.close().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
}
