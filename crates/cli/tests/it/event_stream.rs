//! The operator event stream against the real binary: the TLS socket of JSON lines
//! (login answered with an HMAC of the server's challenge, computed here with the `hmac` crate, not
//! the server's code) and the WebSocket with a signed upgrade. Consumers are killed mid-stream
//! and come back: every event arrives at least once, per-device order holds within a consumer,
//! `prefetch` is honoured, two subkeys each see everything and two consumers of one subkey split it.

use crate::enterprise_api::{canonical, enterprise, local_key, new_key, Key};
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// Generous bound on waiting for one message; a healthy run never comes near it.
const WAIT: Duration = Duration::from_secs(30);

use crate::accounts::ws_tls as tls;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A consumer on the TLS socket.
pub(crate) struct Stream {
    r: BufReader<tokio::io::ReadHalf<Tls>>,
    w: tokio::io::WriteHalf<Tls>,
}

impl Stream {
    /// Connect and read the challenge.
    async fn connect(srv: &Server) -> (Stream, String) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", srv.events))
            .await
            .unwrap();
        let conn = tokio_rustls::TlsConnector::from(tls(srv));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let s = conn.connect(name, tcp).await.unwrap();
        let (r, w) = tokio::io::split(s);
        let mut st = Stream {
            r: BufReader::new(r),
            w,
        };
        let hello = st.recv().await;
        assert_eq!(hello["cmd"], "login_challenge", "{hello}");
        let challenge = hello["challenge"].as_str().unwrap().to_owned();
        assert!(challenge.len() >= 16);
        (st, challenge)
    }

    /// Connect and log in; returns the stream and the `login_res`.
    pub(crate) async fn login(srv: &Server, key: &Key, fields: Value) -> (Stream, Value) {
        let (mut st, challenge) = Stream::connect(srv).await;
        let mut req = fields;
        req["cmd"] = json!("login_req");
        req["key_id"] = json!(key.id);
        req["signature"] = json!(hmac_hex(&key.secret, &challenge));
        st.send(&req).await;
        let res = st.recv().await;
        assert_eq!(res["cmd"], "login_res", "{res}");
        (st, res)
    }

    async fn send(&mut self, v: &Value) {
        self.send_raw(&format!("{v}\n")).await;
    }

    async fn send_raw(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.unwrap();
        self.w.flush().await.unwrap();
    }

    /// The next message; `Value::Null` once the server closed the connection.
    pub(crate) async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut line))
            .await
            .expect("no message from the event stream")
            .unwrap_or(0);
        if n == 0 {
            return Value::Null;
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    pub(crate) async fn ack(&mut self, id: i64) {
        self.send(&json!({"cmd": "event_ack", "delivery_id": id}))
            .await;
    }

    /// Ping and wait for the pong; every event pushed before it is returned.
    async fn ping(&mut self) -> Vec<Value> {
        self.send(&json!({"cmd": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let m = self.recv().await;
            if m["cmd"] == "pong" {
                return before;
            }
            before.push(m);
        }
    }
}

/// An enterprise product with `seq` and `power` points: (product_key, product_secret).
pub(crate) async fn product(srv: &Server, ent: &str) -> (String, String) {
    let points = json!([
        {"name": "power", "type": "bool", "writable": true},
        {"name": "seq", "type": "int", "min": 0, "max": 1000000}
    ]);
    product_with(srv, ent, points).await
}

/// An enterprise product with the data points `points`: (product_key, product_secret).
async fn product_with(srv: &Server, ent: &str, points: Value) -> (String, String) {
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Stream lamp",
                "identity": {"dynamic_registration": true, "allowlist": false},
                "owner": {"enterprise_id": ent},
                "report_limit_per_min": 6000,
                "datapoints": points
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    (
        v["product_key"].as_str().unwrap().into(),
        v["product_secret"].as_str().unwrap().into(),
    )
}

/// An enterprise with a product (see [`product`]) and a read-only key for it.
pub(crate) async fn read_tenant(srv: &Server, name: &str) -> (String, String, Key) {
    let ent = enterprise(srv, name).await;
    let (pk, ps) = product(srv, &ent).await;
    let key = new_key(
        srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    (pk, ps, key)
}

/// Connect `did` and publish reports `seq` = 1..=n (QoS 1, each acknowledged after its commit).
pub(crate) async fn report_sequence(srv: &Server, did: &str, secret: &str, n: i64) {
    let (u, p) = creds(did, secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, &u, &p), 64);
    for seq in 1..=n {
        c.publish(
            format!("dev/{did}/up"),
            QoS::AtLeastOnce,
            false,
            json!({ "seq": seq }).to_string(),
        )
        .await
        .unwrap();
    }
    let mut acked = 0;
    while acked < n {
        match tokio::time::timeout(WAIT, el.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("device {did}: {e}"),
        }
    }
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), el.poll()).await;
}

/// (did, seq) of a report event.
fn event_of(m: &Value) -> (String, i64) {
    (
        m["did"].as_str().unwrap().to_owned(),
        m["data"]["values"]["seq"].as_i64().unwrap(),
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message of a WebSocket, as JSON.
async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(tungstenite::Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

async fn ws_send(ws: &mut Ws, v: &Value) {
    ws.send(tungstenite::Message::Text(v.to_string().into()))
        .await
        .unwrap();
}

/// What a consumer saw of reports: per device, the `seq` values in arrival order.
#[derive(Default, Debug)]
struct Seen {
    by_device: BTreeMap<String, Vec<i64>>,
}

impl Seen {
    fn take(&mut self, m: &Value) -> i64 {
        assert_eq!(m["cmd"], "event_push", "{m}");
        assert_eq!(m["event_type"], "device_status_kv", "{m}");
        let seq = m["data"]["values"]["seq"].as_i64().unwrap();
        self.by_device
            .entry(m["did"].as_str().unwrap().to_owned())
            .or_default()
            .push(seq);
        m["delivery_id"].as_i64().unwrap()
    }

    fn count(&self) -> usize {
        self.by_device.values().map(Vec::len).sum()
    }

    /// Per device, strictly increasing.
    fn assert_in_order(&self, who: &str) {
        for (did, seqs) in &self.by_device {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{who}: device {did} out of order: {seqs:?}"
            );
        }
    }
}

#[tokio::test]
async fn tls_stream_delivers_every_event_across_consumers_and_subkeys() {
    every_event_across_consumers_and_subkeys(Server::start().await).await;
}

/// The same on the PostgreSQL store (`RAMPART_TEST_POSTGRES_URL`; skipped when unset).
#[tokio::test]
async fn tls_stream_delivers_every_event_on_postgresql() {
    let Some(pg) = PgSchema::create("tls_stream_delivers_every_event_on_postgresql") else {
        return;
    };
    let url = pg.store_url();
    let srv = Server::start_with(&[("RAMPART_STORE__URL", url.as_str())]).await;
    let (s, v) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["store"].as_str()), (200, Some("postgres")), "{v}");
    every_event_across_consumers_and_subkeys(srv).await;
    drop(pg);
}

/// Two subkeys each see every event; a consumer killed mid-stream gives its unacknowledged
/// events back and two new consumers split the rest, nothing lost, per-device order kept,
/// `prefetch` honoured.
async fn every_event_across_consumers_and_subkeys(srv: Server) {
    let (pk, ps, key) = read_tenant(&srv, "Stream Co").await;
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(
            srv.register(&pk, &ps, &format!("hw-stream-{i}-{}", nonce()))
                .await,
        );
    }
    const N: i64 = 20;
    let kinds = json!(["device_status_kv"]);

    // Subkey `ops` has one consumer with prefetch 5; subkey `audit` one with the default.
    let (mut a1, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": kinds, "subkey": "ops", "prefetch": 5}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    assert_eq!(res["prefetch"], 5);
    let (mut b, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": kinds, "subkey": "audit"}),
    )
    .await;
    assert_eq!(
        (res["result"].clone(), res["prefetch"].clone()),
        (json!(true), json!(50))
    );

    // Each device reports 1..=N, one device after the other.
    for (did, secret, _) in &devices {
        report_sequence(&srv, did, secret, N).await;
    }
    let total = devices.len() * N as usize;

    // `audit` sees every event, acking as it goes.
    let mut seen_b = Seen::default();
    while seen_b.count() < total {
        let m = b.recv().await;
        let id = seen_b.take(&m);
        b.ack(id).await;
    }
    seen_b.assert_in_order("subkey audit");
    for (did, _, _) in &devices {
        assert_eq!(seen_b.by_device[did], (1..=N).collect::<Vec<_>>());
    }

    // `ops`: exactly `prefetch` events are handed out before any ack (the server pushes what it
    // may before answering a ping).
    let mut seen_a = Seen::default();
    let mut held: Vec<(i64, (String, i64))> = Vec::new();
    for _ in 0..5 {
        let m = a1.recv().await;
        held.push((seen_a.take(&m), event_of(&m)));
    }
    assert!(
        a1.ping().await.is_empty(),
        "more than prefetch=5 unacked events"
    );
    // Ack two, take two more, then die holding five unacknowledged events.
    let mut acked_by_a1: BTreeSet<(String, i64)> = BTreeSet::new();
    for (id, ev) in held.drain(..2) {
        a1.ack(id).await;
        acked_by_a1.insert(ev);
    }
    for _ in 0..2 {
        let m = a1.recv().await;
        held.push((seen_a.take(&m), event_of(&m)));
    }
    assert!(
        a1.ping().await.is_empty(),
        "more than prefetch=5 unacked events"
    );
    seen_a.assert_in_order("ops consumer 1");
    drop(a1); // killed mid-stream: its unacked events go back to the group

    // With no consumer of `ops` left its events are kept; two consumers come back and split it.
    let fields = json!({"products": [pk], "events": kinds, "subkey": "ops", "prefetch": 4});
    let (mut a2, res) = Stream::login(&srv, &key, fields.clone()).await;
    assert_eq!(res["result"], true);
    let (mut a3, res) = Stream::login(&srv, &key, fields).await;
    assert_eq!(res["result"], true);
    let mut seen2 = Seen::default();
    let mut seen3 = Seen::default();
    let mut union: BTreeSet<(String, i64)> = acked_by_a1.clone();
    let all: BTreeSet<(String, i64)> = devices
        .iter()
        .flat_map(|(d, _, _)| (1..=N).map(move |s| (d.clone(), s)))
        .collect();
    // Take from both consumers in turn (each holds at most 4), acking everything.
    let drain = async {
        while union != all {
            for (st, seen) in [(&mut a2, &mut seen2), (&mut a3, &mut seen3)] {
                for m in st.ping().await {
                    let id = seen.take(&m);
                    union.insert(event_of(&m));
                    st.ack(id).await;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), drain)
        .await
        .expect("events were lost: the consumers of `ops` never saw all of them");
    assert!(
        seen2.count() > 0 && seen3.count() > 0,
        "both consumers of `ops` get events: {seen2:?} {seen3:?}"
    );
    seen2.assert_in_order("ops consumer 2");
    seen3.assert_in_order("ops consumer 3");
    // The events consumer 1 held unacknowledged came again.
    let again: BTreeSet<(String, i64)> = seen2
        .by_device
        .iter()
        .chain(seen3.by_device.iter())
        .flat_map(|(d, s)| s.iter().map(move |x| (d.clone(), *x)))
        .collect();
    for (_, ev) in &held {
        assert!(
            again.contains(ev),
            "{ev:?} held by the killed consumer was not delivered again"
        );
    }
    assert!(
        again.is_disjoint(&acked_by_a1),
        "acknowledged events came again"
    );

    // An ack of something this connection does not hold is refused, and the connection lives.
    a2.ack(999_999_999).await;
    let m = a2.recv().await;
    assert_eq!(
        (m["cmd"].as_str(), m["code"].as_str()),
        (Some("invalid_msg"), Some("UNKNOWN_DELIVERY")),
        "{m}"
    );
    assert!(a2.ping().await.is_empty());
}

#[tokio::test]
async fn tls_login_refusals_and_malformed_input() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Refusals").await;
    let other = enterprise(&srv, "Other").await;
    let (pk, _) = product(&srv, &ent).await;
    let (pk_other, _) = product(&srv, &other).await;
    let (pk_unnamed, _) = product(&srv, &ent).await;
    let key = async |scope: &str, net: &str| {
        let body = json!({"products": [pk], "scopes": [scope], "allow_ips": [net]});
        new_key(&srv, ADMIN, &ent, body).await
    };
    let good = key("read", "127.0.0.1/32").await;
    let far = key("read", "10.0.0.0/8").await;
    let control_only = key("control", "127.0.0.1/32").await;
    let disabled = key("read", "127.0.0.1/32").await;
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/enterprises/{ent}/keys/{}/disable", disabled.id),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let fields = |p: &str| json!({"products": [p], "subkey": "ops"});

    // A wrong HMAC: the answer computed with another secret.
    let (mut st, challenge) = Stream::connect(&srv).await;
    let mut req = fields(&pk);
    req["cmd"] = json!("login_req");
    req["key_id"] = json!(good.id);
    req["signature"] = json!(hmac_hex("ras_not_the_secret", &challenge));
    st.send(&req).await;
    let res = st.recv().await;
    assert_eq!(
        (res["result"].clone(), res["code"].clone()),
        (json!(false), json!("SIGNATURE_MISMATCH")),
        "{res}"
    );
    assert_eq!(
        st.recv().await,
        Value::Null,
        "the connection closes after a refusal"
    );

    // The answer to an older challenge does not work on a new one.
    let (mut st, _) = Stream::connect(&srv).await;
    st.send(&req).await;
    assert_eq!(st.recv().await["code"], "SIGNATURE_MISMATCH");

    for (key, f, code) in [
        (&disabled, fields(&pk), "KEY_DISABLED"),
        (&far, fields(&pk), "IP_NOT_ALLOWED"),
        (&control_only, fields(&pk), "FORBIDDEN"),
        (&good, fields(&pk_other), "NOT_FOUND"),
        (&good, fields(&pk_unnamed), "NOT_FOUND"),
        (
            &good,
            json!({"products": [pk], "subkey": "bad-subkey"}),
            "INVALID_REQUEST",
        ),
        (
            &good,
            json!({"products": [pk], "subkey": "ops", "prefetch": 0}),
            "INVALID_REQUEST",
        ),
        (
            &good,
            json!({"products": [pk], "subkey": "ops", "prefetch": 32768}),
            "INVALID_REQUEST",
        ),
        (
            &good,
            json!({"products": [pk], "subkey": "ops", "events": ["nope"]}),
            "INVALID_REQUEST",
        ),
    ] {
        let (mut st, res) = Stream::login(&srv, key, f.clone()).await;
        assert_eq!(
            (res["result"].clone(), res["code"].as_str()),
            (json!(false), Some(code)),
            "{f}: {res}"
        );
        assert_eq!(st.recv().await, Value::Null);
    }

    // Something that is not a login first.
    let (mut st, _) = Stream::connect(&srv).await;
    st.send_raw("{nonsense\n").await;
    let res = st.recv().await;
    assert_eq!(
        (res["cmd"].as_str(), res["result"].clone()),
        (Some("login_res"), json!(false)),
        "{res}"
    );

    // Malformed input after login gets invalid_msg, and the connection survives.
    let (mut st, res) = Stream::login(&srv, &good, fields(&pk)).await;
    assert_eq!(res["result"], true, "{res}");
    for (line, code) in [
        ("{not json\n", "INVALID_JSON"),
        ("[1,2]\n", "INVALID_MESSAGE"),
        ("{\"cmd\":\"dance\"}\n", "UNKNOWN_CMD"),
        ("{\"no_cmd\":1}\n", "INVALID_MESSAGE"),
        (
            "{\"cmd\":\"event_ack\",\"delivery_id\":\"x\"}\n",
            "INVALID_MESSAGE",
        ),
        ("{\"cmd\":\"remote_control_req\"}\n", "INVALID_MESSAGE"),
    ] {
        st.send_raw(line).await;
        let m = st.recv().await;
        assert_eq!(
            (m["cmd"].as_str(), m["code"].as_str()),
            (Some("invalid_msg"), Some(code)),
            "{line}: {m}"
        );
    }
    let long = format!("{}\n", "x".repeat(70 * 1024));
    st.send_raw(&long).await;
    let m = st.recv().await;
    assert_eq!(
        (m["cmd"].as_str(), m["code"].as_str()),
        (Some("invalid_msg"), Some("INVALID_MESSAGE")),
        "{m}"
    );
    assert!(st.ping().await.is_empty());

    // Refusals are in the tenant's audit log.
    let (s, v) = srv
        .admin(
            "GET",
            &format!("/v1/enterprises/{ent}/audit?action=access_key.auth"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let outcomes: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"denied: IP_NOT_ALLOWED"), "{outcomes:?}");
    assert!(
        outcomes.contains(&"denied: SIGNATURE_MISMATCH"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn commands_over_the_stream_reach_the_device() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Control").await;
    let (pk, ps) = product(&srv, &ent).await;
    let (did, secret, _) = srv.register(&pk, &ps, &format!("hw-ctl-{}", nonce())).await;
    let rc = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read", "control"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let ro = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let (mut st, res) = Stream::login(
        &srv,
        &rc,
        json!({"products": [pk], "subkey": "ctl", "events": ["device_online", "device_ack"]}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    let _device = crate::commands::fake_device(&srv, &did, &secret, |cmd| {
        Some(json!({"id": cmd["id"], "status": "ok"}))
    })
    .await;
    let online = st.recv().await;
    assert_eq!(
        (online["event_type"].as_str(), online["did"].as_str()),
        (Some("device_online"), Some(did.as_str())),
        "{online}"
    );
    st.ack(online["delivery_id"].as_i64().unwrap()).await;

    st.send(
        &json!({"cmd": "remote_control_req", "req_id": "r1", "did": did, "set": {"power": true}}),
    )
    .await;
    // The answer and the device's ack event come in either order.
    let mut answer = None;
    let mut ack_event = None;
    while answer.is_none() || ack_event.is_none() {
        let m = st.recv().await;
        match m["cmd"].as_str() {
            Some("remote_control_res") => answer = Some(m),
            Some("event_push") => ack_event = Some(m),
            _ => panic!("unexpected {m}"),
        }
    }
    let answer = answer.unwrap();
    assert_eq!(
        (answer["req_id"].as_str(), answer["result"].clone()),
        (Some("r1"), json!(true)),
        "{answer}"
    );
    assert_eq!(answer["ack"]["status"], "ok", "{answer}");
    let ack_event = ack_event.unwrap();
    assert_eq!(ack_event["event_type"], "device_ack");
    assert_eq!(ack_event["data"]["id"], answer["ack"]["id"]);

    // Validated like the HTTP endpoint.
    st.send(&json!({"cmd": "remote_control_req", "req_id": 2, "did": did, "set": {"seq": 5}}))
        .await;
    let m = st.recv().await;
    assert_eq!(
        (m["result"].clone(), m["code"].as_str(), m["req_id"].clone()),
        (json!(false), Some("INVALID_DATAPOINT"), json!(2)),
        "{m}"
    );
    st.send(
        &json!({"cmd": "remote_control_req", "req_id": 3, "did": "nope", "set": {"power": true}}),
    )
    .await;
    assert_eq!(st.recv().await["code"], "NOT_FOUND");

    // A key without `control` may read the stream but not command.
    let (mut st, res) = Stream::login(&srv, &ro, json!({"products": [pk], "subkey": "ro"})).await;
    assert_eq!(res["result"], true);
    st.send(
        &json!({"cmd": "remote_control_req", "req_id": "x", "did": did, "set": {"power": false}}),
    )
    .await;
    assert_eq!(st.recv().await["code"], "FORBIDDEN");
}

#[tokio::test]
async fn websocket_with_signed_upgrade() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Sockets").await;
    let (pk, ps) = product(&srv, &ent).await;
    let (did, secret, _) = srv.register(&pk, &ps, &format!("hw-ws-{}", nonce())).await;
    let key = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let path = "/v1/enterprise/events";
    let query = format!("products={pk}&subkey=ws_1&prefetch=10&events=device_status_kv");
    let signed = |secret: &str| {
        let ts = now_ms().to_string();
        let n = nonce();
        let sig = hmac_hex(secret, &canonical("GET", path, &query, b"", &ts, &n));
        format!(
            "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={n}, signature={sig}",
            key.id
        )
    };
    let connect = |auth: String| {
        let mut req = format!("wss://localhost:{}{path}?{query}", srv.http)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(tls(&srv))),
        )
    };
    match connect(signed("ras_wrong")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!(
            "a badly signed upgrade must be refused: {:?}",
            other.map(|_| ())
        ),
    }
    let (mut ws, resp) = connect(signed(&key.secret)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    let hello = ws_next(&mut ws).await;
    assert_eq!(
        (
            hello["cmd"].as_str(),
            hello["result"].clone(),
            hello["prefetch"].clone()
        ),
        (Some("login_res"), json!(true), json!(10)),
        "{hello}"
    );
    report_sequence(&srv, &did, &secret, 3).await;
    let mut seen = Seen::default();
    while seen.count() < 3 {
        let m = ws_next(&mut ws).await;
        let id = seen.take(&m);
        ws_send(&mut ws, &json!({"cmd": "event_ack", "delivery_id": id})).await;
    }
    assert_eq!(seen.by_device[&did], vec![1, 2, 3]);
    ws.send(tungstenite::Message::Text("{oops".into()))
        .await
        .unwrap();
    ws_send(&mut ws, &json!({"cmd": "ping"})).await;
    let got = [ws_next(&mut ws).await, ws_next(&mut ws).await];
    assert_eq!(got[0]["code"], "INVALID_JSON", "{got:?}");
    assert_eq!(got[1]["cmd"], "pong", "{got:?}");
}

/// A registration (a new device, then the same hardware again, proving its secret) reaches a consumer that asked for
/// `device_registered`, with the device's hardware id and mode.
#[tokio::test]
async fn registrations_are_streamed() {
    let srv = Server::start().await;
    let (pk, ps, key) = read_tenant(&srv, "Registrations Co").await;
    let (mut st, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": ["device_registered"], "subkey": "reg"}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    let hw = format!("hw-reg-{}", nonce());
    let (did, secret, _) = srv.register(&pk, &ps, &hw).await;
    let (again, _) = srv.register_again(&pk, &ps, &hw, &secret).await;
    assert_eq!(did, again);
    for created in [true, false] {
        let m = st.recv().await;
        assert_eq!(
            (
                m["cmd"].as_str(),
                m["event_type"].as_str(),
                m["did"].as_str()
            ),
            (
                Some("event_push"),
                Some("device_registered"),
                Some(did.as_str())
            ),
            "{m}"
        );
        assert_eq!(
            m["data"],
            json!({"hardware_id": hw, "mode": "product", "created": created}),
            "{m}"
        );
        st.ack(m["delivery_id"].as_i64().unwrap()).await;
    }
}

/// Publish `payload` on `dev/{did}/{sub}` at QoS 1 and wait for its PUBACK (so the next publish
/// is handled after this one).
async fn publish_acked(
    c: &rumqttc::AsyncClient,
    el: &mut rumqttc::EventLoop,
    did: &str,
    sub: &str,
    payload: Vec<u8>,
) {
    c.publish(format!("dev/{did}/{sub}"), QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    v4_until(el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    })
    .await;
}

/// Alert and fault points, changes against the previous state and raw passthrough, from a real
/// device over MQTT to a stream consumer: each kind with its exact data, a sensitive point the
/// key does not name left out, an oversized raw payload refused.
#[tokio::test]
async fn alarms_changes_and_raw_publishes_are_streamed() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Alarms Co").await;
    let (pk, ps) = product_with(
        &srv,
        &ent,
        json!([
            {"name": "temp", "type": "int", "min": 0, "max": 100},
            {"name": "overheat", "type": "bool", "class": "alert"},
            {"name": "motor", "type": "bool", "class": "fault"},
            {"name": "code", "type": "string", "sensitivity": "sensitive"}
        ]),
    )
    .await;
    let key = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let kinds = json!([
        "device_status_raw",
        "device_attr_alert",
        "device_attr_fault",
        "datapoint_changed"
    ]);
    let (mut st, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": kinds, "subkey": "alarms"}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    let (did, secret, _) = srv
        .register(&pk, &ps, &format!("hw-alarm-{}", nonce()))
        .await;
    let (u, p) = creds(&did, &secret);
    let mut opts = v4_options(&srv, &did, &u, &p);
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    let (c, mut el) = rumqttc::AsyncClient::new(opts, 16);
    for report in [
        json!({"temp": 20, "overheat": false}),
        json!({"temp": 21, "overheat": true, "code": "E7"}),
        json!({"temp": 21, "overheat": true, "motor": true}),
        json!({"overheat": false}),
    ] {
        publish_acked(&c, &mut el, &did, "up", report.to_string().into_bytes()).await;
    }
    // Over 32 KiB: refused (a 3.1.1 device cannot be told; it is dropped), then a small one.
    publish_acked(&c, &mut el, &did, "raw", vec![7; 32 * 1024 + 1]).await;
    publish_acked(&c, &mut el, &did, "raw", vec![0, 1, 2, 0xff]).await;
    let want = [
        (
            "datapoint_changed",
            json!({"values": {"temp": 20, "overheat": false},
                   "previous": {"temp": null, "overheat": null}}),
        ),
        (
            "datapoint_changed",
            json!({"values": {"temp": 21, "overheat": true},
                   "previous": {"temp": 20, "overheat": false}}),
        ),
        ("device_attr_alert", json!({"values": {"overheat": true}})),
        (
            "datapoint_changed",
            json!({"values": {"motor": true}, "previous": {"motor": null}}),
        ),
        ("device_attr_fault", json!({"values": {"motor": true}})),
        (
            "datapoint_changed",
            json!({"values": {"overheat": false}, "previous": {"overheat": true}}),
        ),
        ("device_attr_alert", json!({"values": {"overheat": false}})),
        ("device_status_raw", json!({"payload": "AAEC/w=="})),
    ];
    for (kind, data) in want {
        let m = st.recv().await;
        assert_eq!(
            (
                m["cmd"].as_str(),
                m["event_type"].as_str(),
                m["did"].as_str(),
                m["product_key"].as_str()
            ),
            (
                Some("event_push"),
                Some(kind),
                Some(did.as_str()),
                Some(pk.as_str())
            ),
            "{m}"
        );
        assert_eq!(m["data"], data, "{m}");
        st.ack(m["delivery_id"].as_i64().unwrap()).await;
    }
    assert!(st.ping().await.is_empty(), "nothing more was streamed");
    let _ = c.disconnect().await;
}

/// A suspended enterprise: its live session ends with `session_end`, a new login and a signed
/// request are refused with `ENTERPRISE_SUSPENDED`; after reinstatement the queued events
/// arrive.
#[tokio::test]
async fn a_suspended_enterprise_loses_its_stream_until_reinstated() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Suspended Co").await;
    let (pk, ps) = product(&srv, &ent).await;
    let key = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let fields = json!({"products": [pk], "events": ["device_status_kv"], "subkey": "s"});
    let (mut st, res) = Stream::login(&srv, &key, fields.clone()).await;
    assert_eq!(res["result"], true, "{res}");
    let (did, secret, _) = srv
        .register(&pk, &ps, &format!("hw-susp-{}", nonce()))
        .await;

    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{ent}/suspend"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let m = st.recv().await;
    assert_eq!(
        (m["cmd"].as_str(), m["code"].as_str()),
        (Some("session_end"), Some("ENTERPRISE_SUSPENDED")),
        "{m}"
    );
    assert_eq!(st.recv().await, Value::Null, "the session is closed");
    let (mut st, res) = Stream::login(&srv, &key, fields.clone()).await;
    assert_eq!(
        (res["result"].clone(), res["code"].clone()),
        (json!(false), json!("ENTERPRISE_SUSPENDED")),
        "{res}"
    );
    assert_eq!(st.recv().await, Value::Null);
    let (s, v) =
        crate::enterprise_api::signed(&srv, &key, "GET", "/v1/enterprise/devices", None).await;
    assert_eq!(
        (s, crate::enterprise_api::code(&v)),
        (401, "ENTERPRISE_SUSPENDED"),
        "{v}"
    );
    // The devices keep working, and their events are queued for the group.
    report_sequence(&srv, &did, &secret, 3).await;

    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{ent}/unsuspend"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (mut st, res) = Stream::login(&srv, &key, fields).await;
    assert_eq!(res["result"], true, "{res}");
    let mut seen = Seen::default();
    while seen.count() < 3 {
        let m = st.recv().await;
        let id = seen.take(&m);
        st.ack(id).await;
    }
    assert_eq!(seen.by_device[&did], vec![1, 2, 3]);
}

/// A stream session ends, with `session_end` and the connection closed, as soon as its key is
/// disabled, deleted, or rotated past the secret it proved (at once with no overlap, at the end
/// of the overlap otherwise); a session of the new secret goes on.
#[tokio::test]
async fn stream_sessions_end_when_their_key_ends() {
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Revoking Co").await;
    let (pk, _) = product(&srv, &ent).await;
    let fields = json!({"products": [pk], "events": ["device_status_kv"], "subkey": "r"});
    let key_path =
        |key: &Key, action: &str| format!("/v1/enterprises/{ent}/keys/{}{action}", key.id);
    let ended_with = async |st: &mut Stream, code: &str| {
        let m = st.recv().await;
        assert_eq!(
            (m["cmd"].as_str(), m["code"].as_str()),
            (Some("session_end"), Some(code)),
            "{m}"
        );
        assert_eq!(st.recv().await, Value::Null, "the session is closed");
    };

    // disabled
    let key = local_key(&srv, &ent, &pk, &["read"]).await;
    let (mut st, res) = Stream::login(&srv, &key, fields.clone()).await;
    assert_eq!(res["result"], true, "{res}");
    let (s, v) = srv.admin("POST", &key_path(&key, "/disable"), None).await;
    assert_eq!(s, 200, "{v}");
    ended_with(&mut st, "KEY_DISABLED").await;

    // deleted
    let key = local_key(&srv, &ent, &pk, &["read"]).await;
    let (mut st, _) = Stream::login(&srv, &key, fields.clone()).await;
    let (s, v) = srv.admin("DELETE", &key_path(&key, ""), None).await;
    assert_eq!(s, 200, "{v}");
    ended_with(&mut st, "KEY_REVOKED").await;

    // rotated without overlap: the old secret's session ends at once
    let key = local_key(&srv, &ent, &pk, &["read"]).await;
    let (mut st, _) = Stream::login(&srv, &key, fields.clone()).await;
    let (s, v) = srv
        .admin(
            "POST",
            &key_path(&key, "/rotate"),
            Some(json!({"overlap_secs": 0})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    ended_with(&mut st, "KEY_REVOKED").await;

    // rotated with a 2 s overlap: the old secret's session lasts until the overlap ends; the
    // new secret's session is not touched
    let old = local_key(&srv, &ent, &pk, &["read"]).await;
    let (mut st_old, _) = Stream::login(&srv, &old, fields.clone()).await;
    let (s, v) = srv
        .admin(
            "POST",
            &key_path(&old, "/rotate"),
            Some(json!({"overlap_secs": 2})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let new = Key {
        id: old.id.clone(),
        secret: v["secret"].as_str().unwrap().to_owned(),
    };
    let (mut st_new, res) = Stream::login(&srv, &new, fields.clone()).await;
    assert_eq!(res["result"], true, "{res}");
    assert!(
        st_old.ping().await.is_empty(),
        "still open during the overlap"
    );
    ended_with(&mut st_old, "KEY_REVOKED").await;
    assert!(
        st_new.ping().await.is_empty(),
        "the new secret's session goes on"
    );
}
