//! `simulate()` end to end over TLS: a fake HTTPS registration endpoint and a fake broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_device::{simulate, Protocol, SimulateOptions};
use rampart_proto::sign::{register_string, verify_hex};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::fake::{read_http_request, tls_server, write_http_response, Peer, Pkt};

const BATCH: &str = "serial,device_secret\n\
pk1-b1-0001,sec-one\n\
pk1-b1-0002,sec-two\n\
pk1-b1-0003,sec-three\n";

const MODEL: &str = r#"{"product_key": "pk1", "datapoints": [
    {"name": "power", "type": "bool", "writable": true},
    {"name": "level", "type": "int", "min": 0, "max": 10, "step": 2},
    {"name": "mode", "type": "enum", "values": ["a", "b"], "writable": true}
]}"#;

fn secret_of(serial: &str) -> &'static str {
    match serial {
        "pk1-b1-0001" => "sec-one",
        "pk1-b1-0002" => "sec-two",
        "pk1-b1-0003" => "sec-three",
        _ => panic!("unknown serial {serial}"),
    }
}

#[derive(Default)]
struct Log {
    /// Registration requests per serial.
    registrations: HashMap<String, u32>,
    /// Signed CONNECT timestamps per did.
    connects: HashMap<String, Vec<i64>>,
    /// (did, topic, payload) of every PUBLISH from a device.
    publishes: Vec<(String, String, Value)>,
}

type Shared = Arc<Mutex<Log>>;

async fn serve_register(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, log: Shared) {
    while let Ok((s, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let mut s = acceptor.accept(s).await.unwrap();
            let (line, body) = read_http_request(&mut s).await;
            assert_eq!(line, "POST /v1/device/register HTTP/1.1");
            let serial = body["hardware_id"].as_str().unwrap().to_owned();
            assert_eq!(body["product_key"], "pk1", "product key from the serial");
            assert_eq!(body["mode"], "device");
            let nonce = body["nonce"].as_str().unwrap();
            assert_eq!(nonce.len(), 32);
            let msg = register_string("pk1", &serial, body["ts"].as_i64().unwrap(), nonce);
            assert!(verify_hex(
                secret_of(&serial).as_bytes(),
                &msg,
                body["sign"].as_str().unwrap()
            ));
            let n = {
                let mut log = log.lock().unwrap();
                let n = log.registrations.entry(serial.clone()).or_default();
                *n += 1;
                *n
            };
            if serial == "pk1-b1-0002" && n == 1 {
                // A transient failure: the simulator retries.
                let e = r#"{"error":{"code":"UNAVAILABLE","message":"try later"}}"#;
                return write_http_response(&mut s, 503, e).await;
            }
            let did = format!("did-{}", &serial[serial.len() - 4..]);
            let answer = json!({"did": did, "passcode": "123456"}).to_string();
            write_http_response(&mut s, 200, &answer).await;
        });
    }
}

/// Read publishes until one on `topic`, logging all of them.
async fn until_on(
    p: &mut Peer<tokio_rustls::server::TlsStream<TcpStream>>,
    log: &Shared,
    did: &str,
    topic: &str,
) -> Value {
    loop {
        let (t, v) = p.next_publish().await;
        log.lock()
            .unwrap()
            .publishes
            .push((did.to_owned(), t.clone(), v.clone()));
        if t == topic {
            return v;
        }
    }
}

async fn broker_session(s: TcpStream, acceptor: tokio_rustls::TlsAcceptor, log: Shared) {
    let s = acceptor.accept(s).await.unwrap();
    let mut p = Peer::new(s, false);
    let c = p.expect_connect().await;
    let did = c.client_id.clone();
    let serial = format!("pk1-b1-{}", did.trim_start_matches("did-"));
    let ts = c.verify(secret_of(&serial));
    let first = {
        let mut log = log.lock().unwrap();
        let v = log.connects.entry(did.clone()).or_default();
        v.push(ts);
        v.len() == 1
    };
    p.connack(0).await;
    assert_eq!(p.expect_subscribe().await, format!("dev/{did}/down"));
    let (up, down, ack) = (
        format!("dev/{did}/up"),
        format!("dev/{did}/down"),
        format!("dev/{did}/ack"),
    );
    until_on(&mut p, &log, &did, &up).await;

    if did == "did-0001" && first {
        p.publish(&down, br#"{"id":"s1","set":{"mode":"b"}}"#).await;
        assert_eq!(
            until_on(&mut p, &log, &did, &ack).await,
            json!({"id": "s1", "status": "ok"})
        );
        // The report that follows a set carries the new value.
        let (t, v) = p.next_publish().await;
        assert_eq!(t, up);
        assert_eq!(v["mode"], "b");
        log.lock().unwrap().publishes.push((did.clone(), t, v));

        p.publish(&down, br#"{"id":"s2","set":{"level":4}}"#).await;
        let a = until_on(&mut p, &log, &did, &ack).await;
        assert_eq!(
            (a["id"].as_str(), a["status"].as_str()),
            (Some("s2"), Some("error"))
        );

        p.publish(&down, br#"{"id":"r1","action":"reboot"}"#).await;
        assert_eq!(
            until_on(&mut p, &log, &did, &ack).await,
            json!({"id": "r1", "status": "ok"})
        );
    }
    if did == "did-0002" {
        p.publish(&down, br#"{"id":"x1","action":"explode"}"#).await;
        let a = until_on(&mut p, &log, &did, &ack).await;
        assert_eq!(
            (a["id"].as_str(), a["status"].as_str()),
            (Some("x1"), Some("error"))
        );
        p.publish(&down, br#"{"id":"s3","set":{"mode":"b"}}"#).await;
        until_on(&mut p, &log, &did, &ack).await;
        p.publish(&down, br#"{"id":"f1","action":"factory_reset"}"#)
            .await;
        assert_eq!(
            until_on(&mut p, &log, &did, &ack).await,
            json!({"id": "f1", "status": "ok"})
        );
        let (t, v) = p.next_publish().await;
        assert_eq!(t, up);
        assert_eq!(v["mode"], "a", "factory default");
        assert_eq!(v["power"], false, "factory default");
        log.lock().unwrap().publishes.push((did.clone(), t, v));
    }
    // Everything else until the device leaves (reboot or end of the simulation).
    loop {
        match p.next().await {
            Some(Pkt::Publish { topic, payload }) => {
                let v = serde_json::from_slice(&payload).unwrap();
                log.lock().unwrap().publishes.push((did.clone(), topic, v));
            }
            Some(Pkt::Disconnect) => return,
            other => panic!("{did}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn simulates_a_batch_over_tls() {
    let (cert_pem, acceptor) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let batch = dir.path().join("batch.csv");
    let model = dir.path().join("model.json");
    std::fs::write(&ca, &cert_pem).unwrap();
    std::fs::write(&batch, BATCH).unwrap();
    std::fs::write(&model, MODEL).unwrap();

    let log: Shared = Arc::default();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("https://localhost:{}/", http.local_addr().unwrap().port());
    tokio::spawn(serve_register(http, acceptor.clone(), log.clone()));

    let mqtt = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("127.0.0.1:{}", mqtt.local_addr().unwrap().port());
    let sessions: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    {
        let (log, sessions) = (log.clone(), sessions.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = mqtt.accept().await {
                let h = tokio::spawn(broker_session(s, acceptor.clone(), log.clone()));
                sessions.lock().unwrap().push(h);
            }
        });
    }

    let report = simulate(SimulateOptions {
        server,
        api,
        ca,
        batch,
        count: 2,
        product: None,
        model: Some(model),
        interval: Duration::from_millis(300),
        protocol: Protocol::V311,
        duration: Some(Duration::from_secs(5)),
        ota: None,
    })
    .await
    .unwrap();

    // Every broker session ran its script to the end (DISCONNECT from the device).
    let handles = std::mem::take(&mut *sessions.lock().unwrap());
    assert_eq!(handles.len(), 3, "two devices, one of them rebooted");
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("session ended")
            .expect("session script passed");
    }

    assert_eq!(report.registered, 2);
    assert_eq!(report.connected, 2);
    assert_eq!(report.commands_handled, 6, "s1 s2 r1 x1 s3 f1");
    assert_eq!(report.errors, 1, "the malformed x1");

    let log = log.lock().unwrap();
    assert_eq!(log.registrations.get("pk1-b1-0001"), Some(&1));
    assert_eq!(
        log.registrations.get("pk1-b1-0002"),
        Some(&2),
        "retried after 503"
    );
    assert!(!log.registrations.contains_key("pk1-b1-0003"), "count = 2");
    let c1 = &log.connects["did-0001"];
    assert_eq!(c1.len(), 2, "reconnected after the reboot");
    assert!(
        c1[1] >= c1[0] + 800,
        "about a second offline, freshly signed"
    );
    assert_eq!(log.connects["did-0002"].len(), 1);

    let reports: Vec<_> = log
        .publishes
        .iter()
        .filter(|(did, t, _)| *t == format!("dev/{did}/up"))
        .collect();
    assert!(reports.len() as u64 <= report.reports_sent);
    for did in ["did-0001", "did-0002"] {
        let n = reports.iter().filter(|(d, ..)| d == did).count();
        assert!(n >= 4, "{did}: {n} reports");
    }
    for (did, _, v) in &reports {
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 3, "{did}: {v}");
        assert!(o["power"].is_boolean());
        let level = o["level"].as_i64().unwrap();
        assert!((0..=10).contains(&level) && level % 2 == 0, "{v}");
        assert!(["a", "b"].contains(&o["mode"].as_str().unwrap()));
    }
    // After the set, device 1 keeps reporting mode b (also across its reboot).
    let last = reports
        .iter()
        .rev()
        .find(|(d, ..)| d == "did-0001")
        .unwrap();
    assert_eq!(last.2["mode"], "b");
}
