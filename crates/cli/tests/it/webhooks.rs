//! Webhooks of the event stream against the real binary. The receiver is an HTTPS
//! server started here on port 0 with a certificate of its own (rcgen), trusted by the server
//! through `webhooks.ca_file`; it checks every request's HMAC with the `hmac` crate (written from
//! the documentation, not the server's code). Scripted failures exercise retries, dead letters
//! and redrive; other tenants and SSRF refusals go through the signed API.

use crate::enterprise_api::{code, enterprise, local_key, signed, Key};
use crate::event_stream::{product, report_sequence};
use crate::support::*;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

const HOOKS: &str = "/v1/enterprise/webhooks";

/// Generous bound on waiting for one request; a healthy run never comes near it.
const WAIT: Duration = Duration::from_secs(30);

/// One POST as the receiver saw it, after checking its signature.
#[derive(Debug)]
struct Received {
    delivery: String,
    attempt: u32,
    /// What the receiver answered.
    status: u16,
    body: Value,
    /// The body's text exactly as received.
    raw: String,
}

/// An HTTPS webhook receiver on 127.0.0.1, port 0.
struct Receiver {
    url: String,
    ca: std::path::PathBuf,
    /// Answer 500 to the next `n` requests (negative: to every request).
    fail: Arc<AtomicI64>,
    rx: mpsc::UnboundedReceiver<Received>,
    _dir: tempfile::TempDir,
}

/// Accepts TLS connections for axum (handshake failures are skipped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((sock, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(s) = self.tls.accept(sock).await {
                return (s, addr);
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// `v1=` and HMAC-SHA256(secret, "{ts}.{body}") in hex, as the documentation describes it.
fn expected_signature(secret: &str, ts: &str, body: &str) -> String {
    format!("v1={}", hmac_hex(secret, &format!("{ts}.{body}")))
}

impl Receiver {
    /// Start a receiver that checks signatures with `secret` once it is set.
    async fn start(secret: Arc<std::sync::Mutex<String>>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let ca = dir.path().join("receiver-ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener {
            tcp,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        };
        let fail = Arc::new(AtomicI64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let (f, s) = (fail.clone(), secret);
        let hook = move |headers: HeaderMap, body: String| {
            let (f, s, tx) = (f.clone(), s.clone(), tx.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let ts = h("x-rampart-timestamp");
                let secret = s.lock().unwrap().clone();
                assert_eq!(h("content-type"), "application/json");
                assert_eq!(
                    h("x-rampart-signature"),
                    expected_signature(&secret, &ts, &body),
                    "signature of {body}"
                );
                let age = now_ms() - ts.parse::<i64>().unwrap();
                assert!(age.abs() < 300_000, "timestamp {ts} is {age} ms old");
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["webhook_id"], h("x-rampart-webhook"));
                let left = f.load(Ordering::SeqCst);
                let status = if left != 0 {
                    if left > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                    }
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                };
                let _ = tx.send(Received {
                    delivery: h("x-rampart-delivery"),
                    attempt: h("x-rampart-attempt").parse().unwrap(),
                    status: status.as_u16(),
                    body: v,
                    raw: body,
                });
                status
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(hook));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("https://localhost:{port}/hook"),
            ca,
            fail,
            rx,
            _dir: dir,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("no webhook request")
            .unwrap()
    }

    /// Requests until `done` holds for everything accepted (2xx) so far.
    async fn until(&mut self, done: impl Fn(&[Value]) -> bool) -> (Vec<Received>, Vec<Value>) {
        let mut all = Vec::new();
        let mut accepted = Vec::new();
        while !done(&accepted) {
            let r = self.next().await;
            if r.status < 300 {
                accepted.extend(r.body["events"].as_array().unwrap().iter().cloned());
            }
            all.push(r);
        }
        (all, accepted)
    }

    /// The server's environment for this receiver: its CA, private addresses allowed, short
    /// back-off, `attempts` attempts.
    fn env(&self, attempts: &str) -> Vec<(&'static str, String)> {
        vec![
            ("RAMPART_WEBHOOKS__CA_FILE", self.ca.display().to_string()),
            ("RAMPART_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true".into()),
            ("RAMPART_WEBHOOKS__BACKOFF_BASE_MS", "20".into()),
            ("RAMPART_WEBHOOKS__BACKOFF_MAX_MS", "100".into()),
            ("RAMPART_WEBHOOKS__MAX_ATTEMPTS", attempts.into()),
        ]
    }
}

/// `env` as `Server` takes it.
fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The device of these tests reports in several short connections, back to back.
async fn start_for(r: &Receiver, attempts: &str) -> Server {
    let env = r.env(attempts);
    let mut env = borrowed(&env);
    env.push(QUICK_RECONNECTS);
    Server::start_with(&env).await
}

/// An enterprise with a product, a device and a read+control key.
async fn tenant(srv: &Server, name: &str) -> (String, String, String, String, Key) {
    let ent = enterprise(srv, name).await;
    let (pk, ps) = product(srv, &ent).await;
    let (did, secret, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
    let key = local_key(srv, &ent, &pk, &["read", "control"]).await;
    (ent, pk, did, secret, key)
}

/// Assert that a signed call answers `status` with error `want`.
async fn refused(
    srv: &Server,
    key: &Key,
    m: &str,
    p: &str,
    body: Option<&Value>,
    status: u16,
    want: &str,
) {
    let (st, v) = signed(srv, key, m, p, body).await;
    assert_eq!((st, code(&v)), (status, want), "{m} {p} {body:?}: {v}");
}

async fn create_hook(srv: &Server, key: &Key, body: Value) -> (String, String) {
    let (s, v) = signed(srv, key, "POST", HOOKS, Some(&body)).await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("rwhs_") && secret.len() == 5 + 64,
        "{secret}"
    );
    (v["webhook_id"].as_str().unwrap().to_owned(), secret)
}

/// A receiver, a server for it allowing `attempts` attempts, a tenant and its webhook for
/// `events` pointing at the receiver, whose secret the receiver checks.
struct Hooked {
    rcv: Receiver,
    srv: Server,
    ent: String,
    pk: String,
    did: String,
    dsecret: String,
    key: Key,
    hook: String,
}

async fn hooked(attempts: &str, events: Value) -> Hooked {
    let secret = Arc::new(std::sync::Mutex::new(String::new()));
    let rcv = Receiver::start(secret.clone()).await;
    let srv = start_for(&rcv, attempts).await;
    let (ent, pk, did, dsecret, key) = tenant(&srv, "Hooked").await;
    let body = json!({"url": rcv.url, "products": [pk], "events": events});
    let (hook, s) = create_hook(&srv, &key, body).await;
    *secret.lock().unwrap() = s;
    Hooked {
        rcv,
        srv,
        ent,
        pk,
        did,
        dsecret,
        key,
        hook,
    }
}

/// The `seq` values of the report events among `events`, in order.
fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["event_type"] == "device_status_kv")
        .map(|e| e["data"]["values"]["seq"].as_i64().unwrap())
        .collect()
}

/// A page of dead letters once it holds `n` (bounded polling: moving to the dead letters is
/// an effect inside the server with no signal to wait on).
async fn dead_letters(srv: &Server, key: &Key, hook: &str, n: i64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = signed(
            srv,
            key,
            "GET",
            &format!("/v1/enterprise/webhooks/{hook}/dead-letters?limit=100"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        // The page's rows and its total are read one after the other: both must show all `n`.
        let rows = v["data"].as_array().map_or(0, Vec::len);
        if v["meta"]["total"] == n && rows as i64 == n {
            return v;
        }
        assert!(Instant::now() < deadline, "dead letters stayed at {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn signed_events_arrive_in_order_after_retries() {
    let mut h = hooked(
        "5",
        json!(["device_online", "device_offline", "device_status_kv"]),
    )
    .await;
    // The first two attempts are answered 500.
    h.rcv.fail.store(2, Ordering::SeqCst);
    report_sequence(&h.srv, &h.did, &h.dsecret, 5).await;
    let (all, accepted) = h
        .rcv
        .until(|ev| ev.iter().any(|e| e["event_type"] == "device_offline"))
        .await;
    // Every report arrived once accepted, in order, between online and offline.
    assert_eq!(seqs(&accepted), vec![1, 2, 3, 4, 5], "{accepted:?}");
    assert_eq!(accepted.first().unwrap()["event_type"], "device_online");
    assert_eq!(accepted.last().unwrap()["event_type"], "device_offline");
    for e in &accepted {
        assert_eq!(
            (e["did"].as_str(), e["product_key"].as_str()),
            (Some(h.did.as_str()), Some(h.pk.as_str()))
        );
        assert!(e["delivery_id"].as_i64().unwrap() > 0 && e["ts"].as_i64().unwrap() > 0);
    }
    // The failed attempts were retried: same delivery id and body, attempt counting up.
    assert_eq!(
        (all[0].status, all[1].status, all[2].status),
        (500, 500, 204)
    );
    assert_eq!((all[0].attempt, all[1].attempt, all[2].attempt), (1, 2, 3));
    assert!(all[0].delivery.starts_with("rwd_"));
    assert!(all[..3]
        .iter()
        .all(|r| r.delivery == all[0].delivery && r.raw == all[0].raw));
    assert_eq!(all[0].body["webhook_id"], h.hook);
    assert_eq!(h.srv.metric("rampart_webhook_failures_total").await, 2.0);
    h.srv
        .wait_metric("rampart_webhook_delivered_total", |v| v >= 7.0)
        .await;
    assert_eq!(
        h.srv.metric("rampart_webhook_dead_letters_total").await,
        0.0
    );
    // Created and audited.
    let (st, v) = signed(
        &h.srv,
        &h.key,
        "GET",
        "/v1/enterprise/audit?action=webhook.create",
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["target"], format!("webhook:{}", h.hook));
}

#[tokio::test]
async fn failing_endpoint_fills_dead_letters_that_redrive_delivers() {
    let mut h = hooked("3", json!(["device_status_kv"])).await;
    h.rcv.fail.store(-1, Ordering::SeqCst);
    report_sequence(&h.srv, &h.did, &h.dsecret, 3).await;
    let page = dead_letters(&h.srv, &h.key, &h.hook, 3).await;
    let letters = page["data"].as_array().unwrap();
    assert_eq!(
        seqs(
            &letters
                .iter()
                .map(|l| json!({"event_type": l["event_type"], "data": l["data"]}))
                .collect::<Vec<_>>()
        ),
        vec![1, 2, 3]
    );
    for l in letters {
        assert_eq!(l["webhook_id"], h.hook);
        assert_eq!(l["did"], h.did);
        assert_eq!(l["attempts"], 3);
        assert_eq!(l["last_status"], 500);
        assert!(l["last_error"].as_str().unwrap().contains("500"), "{l}");
    }
    assert_eq!(page["meta"]["page"], 1);
    // Every batch was tried three times, never accepted.
    let mut tries: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    while let Ok(r) = h.rcv.rx.try_recv() {
        assert_eq!(r.status, 500);
        tries.entry(r.delivery).or_default().push(r.attempt);
    }
    assert!(!tries.is_empty());
    assert!(tries.values().all(|a| a == &vec![1, 2, 3]), "{tries:?}");
    h.srv
        .wait_metric("rampart_webhook_dead_letters_total", |v| v == 3.0)
        .await;

    // The receiver is fixed; one dead letter is redriven, then the rest.
    h.rcv.fail.store(0, Ordering::SeqCst);
    let letters_path = format!("{HOOKS}/{}/dead-letters", h.hook);
    let one = format!("{letters_path}/{}/redrive", letters[0]["id"]);
    let (st, v) = signed(&h.srv, &h.key, "POST", &one, None).await;
    assert_eq!((st, &v["redriven"]), (200, &json!(1)), "{v}");
    let (_, got) = h.rcv.until(|ev| !ev.is_empty()).await;
    assert_eq!(seqs(&got), vec![1]);
    refused(&h.srv, &h.key, "POST", &one, None, 404, "NOT_FOUND").await;
    let all = format!("{letters_path}/redrive");
    let (st, v) = signed(&h.srv, &h.key, "POST", &all, None).await;
    assert_eq!((st, &v["redriven"]), (200, &json!(2)), "{v}");
    let (_, got) = h.rcv.until(|ev| seqs(ev).len() == 2).await;
    assert_eq!(seqs(&got), vec![2, 3]);
    dead_letters(&h.srv, &h.key, &h.hook, 0).await;

    // A dead letter can be deleted instead.
    h.rcv.fail.store(-1, Ordering::SeqCst);
    report_sequence(&h.srv, &h.did, &h.dsecret, 1).await;
    let page = dead_letters(&h.srv, &h.key, &h.hook, 1).await;
    let id = page["data"][0]["id"].as_i64().unwrap();
    let path = format!("{letters_path}/{id}");
    let (st, v) = signed(&h.srv, &h.key, "DELETE", &path, None).await;
    assert_eq!((st, &v["deleted"]), (200, &json!(1)), "{v}");
    refused(&h.srv, &h.key, "DELETE", &path, None, 404, "NOT_FOUND").await;
    dead_letters(&h.srv, &h.key, &h.hook, 0).await;
}

#[tokio::test]
async fn tenants_scopes_and_refused_urls() {
    // The default configuration: HTTPS only, no private addresses.
    let srv = Server::start().await;
    let (ent, pk, _, _, key) = tenant(&srv, "Owner").await;
    let (_, other_pk, _, _, other) = tenant(&srv, "Stranger").await;
    let create = |url: &str, product: &str| json!({"url": url, "products": [product], "events": ["device_attr_alert"]});
    let mut cases = Vec::new();
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.0.1]/hook",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
    ] {
        cases.push((create(url, &pk), "WEBHOOK_URL_REFUSED"));
    }
    for body in [
        create("not a url", &pk),
        create("https://user:pw@8.8.8.8/hook", &pk),
        json!({"url": "https://8.8.8.8/hook", "products": [pk], "events": ["nope"]}),
        json!({"url": "https://8.8.8.8/hook", "products": []}),
    ] {
        cases.push((body, "INVALID_REQUEST"));
    }
    for (body, want) in &cases {
        refused(&srv, &key, "POST", HOOKS, Some(body), 400, want).await;
    }
    // Another enterprise's product is unknown to the key.
    let body = create("https://8.8.8.8/hook", &other_pk);
    refused(&srv, &key, "POST", HOOKS, Some(&body), 404, "NOT_FOUND").await;
    // A public address literal is accepted (nothing is sent: the kind never occurs here).
    let (hook, _) = create_hook(&srv, &key, create("https://8.8.8.8/hook", &pk)).await;
    let base = format!("{HOOKS}/{hook}");
    let (st, v) = signed(&srv, &key, "GET", &base, None).await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("secret").is_none(), "{v}");
    assert_eq!(v["url"], "https://8.8.8.8/hook");
    assert_eq!(v["events"], json!(["device_attr_alert"]));

    // Another tenant sees nothing and can change nothing.
    for (m, p) in [
        ("GET", base.clone()),
        ("DELETE", base.clone()),
        ("POST", format!("{base}/disable")),
        ("GET", format!("{base}/dead-letters")),
        ("POST", format!("{base}/dead-letters/redrive")),
        ("DELETE", format!("{base}/dead-letters")),
    ] {
        refused(&srv, &other, m, &p, None, 404, "NOT_FOUND").await;
    }
    let (st, v) = signed(&srv, &other, "GET", "/v1/enterprise/webhooks", None).await;
    assert_eq!((st, &v["meta"]["total"]), (200, &json!(0)), "{v}");

    // A read-only key of the owner lists but cannot change.
    let ro = local_key(&srv, &ent, &pk, &["read"]).await;
    let (st, v) = signed(&srv, &ro, "GET", "/v1/enterprise/webhooks", None).await;
    assert_eq!((st, &v["meta"]["total"]), (200, &json!(1)), "{v}");
    assert_eq!(v["data"][0]["webhook_id"], hook);
    for (m, p) in [
        ("DELETE", base.clone()),
        ("POST", format!("{base}/disable")),
    ] {
        refused(&srv, &ro, m, &p, None, 403, "FORBIDDEN").await;
    }
    let body = create("https://8.8.8.8/h", &pk);
    refused(&srv, &ro, "POST", HOOKS, Some(&body), 403, "FORBIDDEN").await;

    // Disable, enable, delete.
    let (st, v) = signed(&srv, &key, "POST", &format!("{base}/disable"), None).await;
    assert_eq!((st, &v["disabled"]), (200, &json!(true)), "{v}");
    let (st, v) = signed(&srv, &key, "POST", &format!("{base}/enable"), None).await;
    assert_eq!((st, &v["disabled"]), (200, &json!(false)), "{v}");
    let (st, v) = signed(&srv, &key, "DELETE", &base, None).await;
    assert_eq!((st, &v["status"]), (200, &json!("deleted")), "{v}");
    let (st, _) = signed(&srv, &key, "GET", &base, None).await;
    assert_eq!(st, 404);
    let (st, v) = signed(
        &srv,
        &key,
        "GET",
        "/v1/enterprise/audit?action=webhook.delete",
        None,
    )
    .await;
    assert_eq!(
        (st, &v["data"][0]["target"]),
        (200, &json!(format!("webhook:{hook}"))),
        "{v}"
    );
}

#[tokio::test]
async fn queued_events_survive_a_restart() {
    // Enough attempts that nothing becomes a dead letter while the endpoint is down.
    let mut h = hooked("100", json!(["device_status_kv"])).await;
    h.rcv.fail.store(-1, Ordering::SeqCst);
    report_sequence(&h.srv, &h.did, &h.dsecret, 3).await;
    h.srv
        .wait_metric("rampart_event_stream_queued_total", |v| v >= 3.0)
        .await;
    assert_eq!(h.rcv.next().await.status, 500);
    // Stopped while the endpoint fails; started again, it delivers what was queued, in order.
    let srv = h.srv.restart(&borrowed(&h.rcv.env("100"))).await;
    h.rcv.fail.store(0, Ordering::SeqCst);
    let (_, got) = h.rcv.until(|ev| seqs(ev).len() >= 3).await;
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    srv.wait_metric("rampart_webhook_delivered_total", |v| v >= 3.0)
        .await;
}

/// A suspended enterprise's webhook delivers nothing: its events stay queued and go out, in
/// order, once the enterprise is reinstated.
#[tokio::test]
async fn a_suspended_enterprise_s_webhook_holds_its_events() {
    let mut h = hooked("5", json!(["device_status_kv"])).await;
    let (s, v) = h
        .srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{}/suspend", h.ent),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    report_sequence(&h.srv, &h.did, &h.dsecret, 3).await;
    // Nothing is posted while suspended (the reports are stored and queued by now: each was
    // acknowledged after its commit).
    let quiet = tokio::time::timeout(Duration::from_secs(2), h.rcv.rx.recv()).await;
    assert!(quiet.is_err(), "delivered while suspended: {quiet:?}");
    refused(
        &h.srv,
        &h.key,
        "GET",
        &format!("{HOOKS}/{}", h.hook),
        None,
        401,
        "ENTERPRISE_SUSPENDED",
    )
    .await;
    let (s, v) = h
        .srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{}/unsuspend", h.ent),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (all, accepted) = h.rcv.until(|ev| seqs(ev).len() == 3).await;
    assert_eq!(seqs(&accepted), vec![1, 2, 3]);
    assert!(
        all.iter().all(|r| r.attempt == 1),
        "no attempt was used up while suspended"
    );
}

/// Changes and raw publishes reach a webhook like any other kind, with the same data as on
/// the stream.
#[tokio::test]
async fn changes_and_raw_publishes_reach_a_webhook() {
    let mut h = hooked("5", json!(["datapoint_changed", "device_status_raw"])).await;
    let (u, p) = creds(&h.did, &h.dsecret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&h.srv, &h.did, &u, &p), 8);
    for (sub, payload) in [
        ("up", br#"{"seq":1,"power":true}"#.to_vec()),
        ("up", br#"{"seq":1,"power":false}"#.to_vec()),
        ("raw", b"hello".to_vec()),
    ] {
        c.publish(
            format!("dev/{}/{sub}", h.did),
            rumqttc::QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
        v4_until(&mut el, |e| {
            matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))).then_some(())
        })
        .await;
    }
    let (_, accepted) = h.rcv.until(|ev| ev.len() >= 3).await;
    let got: Vec<(&str, &Value)> = accepted
        .iter()
        .map(|e| (e["event_type"].as_str().unwrap(), &e["data"]))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "datapoint_changed",
                &json!({"values": {"seq": 1, "power": true}, "previous": {"seq": null, "power": null}})
            ),
            (
                "datapoint_changed",
                &json!({"values": {"power": false}, "previous": {"power": true}})
            ),
            ("device_status_raw", &json!({"payload": "aGVsbG8="})),
        ]
    );
    let _ = c.disconnect().await;
}

/// A webhook follows the access key that created it: its deliveries are held while the key is
/// disabled (and go out once it is enabled again), and the webhook is disabled when the key is
/// rotated or deleted, so that a webhook planted with a leaked secret does not outlive it. Its
/// events stay queued for when the enterprise enables it again.
#[tokio::test]
async fn a_webhook_follows_the_key_that_created_it() {
    let mut h = hooked("5", json!(["device_status_kv"])).await;
    let key_path = format!("/v1/enterprises/{}/keys/{}", h.ent, h.key.id);
    let (s, v) = h
        .srv
        .admin("POST", &format!("{key_path}/disable"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    report_sequence(&h.srv, &h.did, &h.dsecret, 2).await;
    let quiet = tokio::time::timeout(Duration::from_secs(2), h.rcv.rx.recv()).await;
    assert!(
        quiet.is_err(),
        "delivered while the key was disabled: {quiet:?}"
    );
    let (s, v) = h
        .srv
        .admin("POST", &format!("{key_path}/enable"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (all, accepted) = h.rcv.until(|ev| seqs(ev).len() == 2).await;
    assert_eq!(seqs(&accepted), vec![1, 2]);
    assert!(
        all.iter().all(|r| r.attempt == 1),
        "no attempt used up while held"
    );

    // Rotated: the webhook is disabled, and its events wait.
    let (s, v) = h
        .srv
        .admin(
            "POST",
            &format!("{key_path}/rotate"),
            Some(json!({"overlap_secs": 0})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let key = Key {
        id: h.key.id.clone(),
        secret: v["secret"].as_str().unwrap().to_owned(),
    };
    let hook_path = format!("{HOOKS}/{}", h.hook);
    let (s, v) = signed(&h.srv, &key, "GET", &hook_path, None).await;
    assert_eq!((s, &v["disabled"]), (200, &json!(true)), "{v}");
    report_sequence(&h.srv, &h.did, &h.dsecret, 1).await;
    let quiet = tokio::time::timeout(Duration::from_secs(2), h.rcv.rx.recv()).await;
    assert!(quiet.is_err(), "delivered after the rotation: {quiet:?}");
    let (s, v) = signed(&h.srv, &key, "POST", &format!("{hook_path}/enable"), None).await;
    assert_eq!(s, 200, "{v}");
    let (_, accepted) = h.rcv.until(|ev| !seqs(ev).is_empty()).await;
    assert_eq!(seqs(&accepted), vec![1]);
}
