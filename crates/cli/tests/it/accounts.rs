//! End-user accounts: sign-up, activation, login, tokens, bindings, shares, role checks
//! on the device endpoints and live push, against the real binary.

use crate::support::*;
use futures_util::StreamExt;
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

pub(crate) const PW: &str = "velvet tundra oxide lantern";

/// A server with one product (dynamic registration) and one app serving it.
pub(crate) struct Env {
    pub(crate) srv: Server,
    pub(crate) app: String,
    pub(crate) pk: String,
    pub(crate) ps: String,
}

impl Env {
    pub(crate) async fn start() -> Env {
        Env::start_with(&[]).await
    }

    pub(crate) async fn start_with(vars: &[(&str, &str)]) -> Env {
        Env::on(Server::start_with(vars).await).await
    }

    /// The product and app of every `Env`, on a server started elsewhere.
    pub(crate) async fn on(srv: Server) -> Env {
        let (pk, ps) = srv.product(true, false).await;
        let (s, v) = srv
            .admin(
                "POST",
                "/v1/apps",
                Some(json!({"name": "Lamp app", "product_keys": [pk]})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert!(v["app_secret"].as_str().unwrap().len() >= 32);
        Env {
            app: v["app_id"].as_str().unwrap().into(),
            srv,
            pk,
            ps,
        }
    }

    /// A call with the app header.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .srv
            .http_client
            .request(m, self.srv.url(path))
            .header("X-Rampart-App-Id", &self.app);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A registered device: (did, device_secret, passcode).
    pub(crate) async fn device(&self) -> (String, String, String) {
        self.srv
            .register(&self.pk, &self.ps, &format!("hw-{}", nonce()))
            .await
    }

    /// Every message in the outbox for `to` and `purpose`, oldest first.
    pub(crate) fn outbox(&self, to: &str, purpose: &str) -> Vec<Value> {
        let dir = self.srv.data().join("outbox");
        let mut out: Vec<Value> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                    .filter(|v: &Value| v["to"] == to && v["purpose"] == purpose)
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|v| v["created_at"].as_i64());
        out
    }

    /// Wait until the outbox holds more than `seen` messages for `to`, and return the newest code.
    /// (Messages are written by a background task; the file is the only signal.)
    pub(crate) async fn code(&self, to: &str, purpose: &str, seen: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let msgs = self.outbox(to, purpose);
            if msgs.len() > seen {
                let last = msgs.last().unwrap();
                let code = last["code"].as_str().unwrap().to_owned();
                assert_eq!(code.len(), 6);
                assert!(code.bytes().all(|b| b.is_ascii_digit()));
                return code;
            }
            assert!(Instant::now() < deadline, "no {purpose} message for {to}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sign up, activate and log in; returns (access, refresh).
    pub(crate) async fn user(&self, email: &str) -> (String, String) {
        let (s, v) = self
            .call(
                "POST",
                "/v1/users",
                None,
                Some(json!({"email": email, "password": PW})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let code = self.code(email, "activate", 0).await;
        let (s, v) = self
            .call(
                "POST",
                "/v1/users/activate",
                None,
                Some(json!({"email": email, "code": code})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        self.login(email, PW).await
    }

    /// Audit rows of `action`, newest first (read from the server's SQLite store).
    pub(crate) async fn audit(&self, action: &str) -> Vec<rampart_store::AuditRow> {
        let store = rampart_store::Store::open_sqlite(&self.srv.data().join("rampart.db"))
            .await
            .unwrap();
        let rows = store.list_audit(Some(action), 100).await.unwrap();
        store.close().await;
        rows
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> (String, String) {
        let (s, v) = self.try_login(username, password).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["expires_in"].as_i64().unwrap() > 0, "{v}");
        (
            v["access_token"].as_str().unwrap().into(),
            v["refresh_token"].as_str().unwrap().into(),
        )
    }

    pub(crate) async fn try_login(&self, username: &str, password: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// Bind with the passcode; returns the role.
    pub(crate) async fn bind(&self, token: &str, did: &str, passcode: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/v1/bindings",
            Some(token),
            Some(json!({"did": did, "passcode": passcode})),
        )
        .await
    }

    /// Share `did` with `user` as `role` and have them accept; returns the share id.
    pub(crate) async fn share(
        &self,
        owner: &str,
        did: &str,
        user: &str,
        invitee: &str,
        role: &str,
    ) -> String {
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/devices/{did}/shares"),
                Some(owner),
                Some(json!({"user": user, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["share_id"].as_str().unwrap().to_owned();
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/shares/{id}/accept"),
                Some(invitee),
                None,
            )
            .await;
        assert_eq!((s, v["status"].as_str()), (200, Some("accepted")), "{v}");
        id
    }

    /// A live-push connection with the token in the query string or the header.
    pub(crate) async fn ws(&self, token: &str, in_query: bool) -> Ws {
        open_ws(&self.srv, "/v1/ws", token, in_query).await
    }
}

/// A WebSocket to `path` on the server with `token` in the query string or the header.
pub(crate) async fn open_ws(srv: &Server, path: &str, token: &str, in_query: bool) -> Ws {
    let url = if in_query {
        format!("wss://localhost:{}{path}?access_token={token}", srv.http)
    } else {
        format!("wss://localhost:{}{path}", srv.http)
    };
    let mut req = url.into_client_request().unwrap();
    if !in_query {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(ws_tls(srv))),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    Ws(ws)
}

pub(crate) fn ws_tls(srv: &Server) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(srv.ca_path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Ws(WsStream);

impl Ws {
    /// The next JSON message (or `{"closed": code}` when the server closes).
    pub(crate) async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match self.0.next().await {
                    Some(Ok(tungstenite::Message::Text(t))) => {
                        return serde_json::from_str(t.as_str()).unwrap()
                    }
                    Some(Ok(tungstenite::Message::Close(f))) => {
                        return json!({"closed": f.map(|f| u16::from(f.code))})
                    }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => return json!({"closed": null}),
                }
            }
        })
        .await
        .expect("no live push message within 15 s")
    }

    /// The next message of `kind` (other kinds, e.g. presence, are skipped).
    pub(crate) async fn next_kind(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["kind"] == kind || v.get("closed").is_some() {
                return v;
            }
        }
    }
}

/// A simulated device: reports with QoS 1 (waiting for the PUBACK, i.e. the commit) and answers
/// every command with `ok`.
pub(crate) struct Dev {
    c: rumqttc::AsyncClient,
    did: String,
    pubacks: mpsc::UnboundedReceiver<()>,
    _task: tokio::task::JoinHandle<()>,
}

impl Dev {
    pub(crate) async fn connect(srv: &Server, did: &str, secret: &str) -> Dev {
        let (u, p) = creds(did, secret);
        let (c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, &u, &p), 10);
        c.subscribe(format!("dev/{did}/down"), QoS::AtLeastOnce)
            .await
            .unwrap();
        v4_until(&mut el, |e| {
            matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
        })
        .await;
        let (tx, pubacks) = mpsc::unbounded_channel();
        let c2 = c.clone();
        let ack_topic = format!("dev/{did}/ack");
        let task = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                match ev {
                    Event::Incoming(Packet::Publish(p)) => {
                        let cmd: Value = serde_json::from_slice(&p.payload).unwrap();
                        let ack = json!({"id": cmd["id"], "status": "ok"}).to_string();
                        // QoS 0, so every PUBACK this client sees belongs to a report
                        let _ = c2.publish(&ack_topic, QoS::AtMostOnce, false, ack).await;
                    }
                    Event::Incoming(Packet::PubAck(_)) => {
                        let _ = tx.send(());
                    }
                    _ => {}
                }
            }
        });
        Dev {
            c,
            did: did.to_owned(),
            pubacks,
            _task: task,
        }
    }

    pub(crate) async fn report(&mut self, v: Value) {
        self.c
            .publish(
                format!("dev/{}/up", self.did),
                QoS::AtLeastOnce,
                false,
                v.to_string(),
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.pubacks.recv())
            .await
            .expect("no PUBACK for a report");
    }
}

#[tokio::test]
async fn sign_up_bind_control_and_live_push() {
    let env = Env::start().await;
    let (did, secret, passcode) = env.device().await;
    assert_eq!(passcode.len(), 10);

    // sign-up; not activated yet: the right password gets ACCOUNT_NOT_ACTIVE, a wrong one the
    // generic 401
    let email = "owner@example.com";
    let (s, v) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = env.try_login(email, PW).await;
    assert_error(s, &v, 403, "ACCOUNT_NOT_ACTIVE");
    let (s, _) = env.try_login(email, "velvet tundra oxide lantexn").await;
    assert_eq!(s, 401);
    // the same address again answers the same, and its owner is told instead
    let (s, _) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!(s, 201);
    // without an app: refused
    let (s, v) = env
        .srv
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": "x@example.com", "password": PW})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");

    let code = env.code(email, "activate", 0).await;
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"email": email, "code": code})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env.try_login("Owner@Example.com", PW).await;
    assert_eq!((s, &v["expires_in"]), (200, &json!(900)), "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (s, me) = env.call("GET", "/v1/users/me", Some(&token), None).await;
    assert_eq!((s, me["email"].as_str()), (200, Some(email)));

    // binding: a wrong passcode and an unknown did answer the same 404
    let (s1, v1) = env.bind(&token, &did, "AAAAAAAAAA").await;
    let (s2, v2) = env.bind(&token, "nosuchdevice0000abcd", &passcode).await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(v1, v2);
    let (s, v) = env.bind(&token, &did, &passcode).await;
    assert_eq!((s, v["role"].as_str()), (201, Some("owner")), "{v}");
    let (s, v) = env.bind(&token, &did, &passcode).await;
    assert_eq!((s, v["role"].as_str()), (200, Some("owner")), "{v}");
    let (s, v) = env
        .call("GET", "/v1/bindings?limit=10", Some(&token), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"], json!({"page": 1, "limit": 10, "total": 1}));
    assert_eq!(v["data"][0]["did"], did.as_str());
    assert_eq!(v["data"][0]["role"], "owner");
    assert!(v["data"][0].get("passcode").is_none());

    // the passcode is readable by the administrator only
    let (s, v) = env
        .srv
        .admin("GET", &format!("/v1/devices/{did}/passcode"), None)
        .await;
    assert_eq!((s, v["passcode"].as_str()), (200, Some(passcode.as_str())));
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}/passcode"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (_, view) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&token), None)
        .await;
    assert!(!view.to_string().contains(&passcode));

    // live push, then a device report reaches it
    let mut ws = env.ws(&token, true).await;
    let mut dev = Dev::connect(&env.srv, &did, &secret).await;
    let p = ws.next_kind("presence").await;
    assert_eq!(
        (p["did"].as_str(), p["online"].as_bool()),
        (Some(did.as_str()), Some(true))
    );
    dev.report(json!({"power": true, "level": 40})).await;
    let m = ws.next_kind("status").await;
    assert_eq!(m["did"], did.as_str());
    assert_eq!(m["values"], json!({"power": true, "level": 40}));

    // the owner reads state and history and sends a command
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&token), None)
        .await;
    assert_eq!((s, &v["state"]["level"]), (200, &json!(40)), "{v}");
    let (s, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}/history?point=level"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, v["meta"]["count"].as_i64()), (200, Some(1)), "{v}");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(&token),
            Some(json!({"set": {"power": false}})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let a = ws.next_kind("ack").await;
    assert_eq!(
        (a["did"].as_str(), a["id"].as_str()),
        (Some(did.as_str()), v["id"].as_str())
    );
    // the administrator still uses the same endpoints
    let (s, _) = env
        .srv
        .admin("GET", &format!("/v1/devices/{did}"), None)
        .await;
    assert_eq!(s, 200);

    // factory reset unbinds everyone; the stream for the device stops
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(&token),
            Some(json!({"action": "factory_reset"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&token), None)
        .await;
    assert_eq!(s, 404);
    let (_, v) = env.call("GET", "/v1/bindings", Some(&token), None).await;
    assert_eq!(v["meta"]["total"], 0);
    // the passcode binds again after the reset
    let (s, v) = env.bind(&token, &did, &passcode).await;
    assert_eq!((s, v["role"].as_str()), (201, Some("owner")), "{v}");
}

#[tokio::test]
async fn shares_roles_and_revocation_stop_the_stream() {
    let env = Env::start().await;
    let (owner, _) = env.user("owner@example.com").await;
    let (guest, _) = env.user("guest@example.com").await;
    let (d1, s1, p1) = env.device().await;
    let (d2, s2, p2) = env.device().await;
    for (d, p) in [(&d1, &p1), (&d2, &p2)] {
        assert_eq!(env.bind(&owner, d, p).await.0, 201);
    }
    // a second passcode binder does not become a second owner
    let (s, v) = env.bind(&guest, &d1, &p1).await;
    assert_error(s, &v, 409, "CONFLICT");

    // an invitation is pending until accepted
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{d1}/shares"),
            Some(&owner),
            Some(json!({"user": "guest@example.com", "role": "guest"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let share1 = v["share_id"].as_str().unwrap().to_owned();
    let (s, v) = env.call("GET", "/v1/shares", Some(&guest), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["status"], "pending");
    assert_eq!(v["data"][0]["did"], d1.as_str());
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{d1}"), Some(&guest), None)
        .await;
    assert_eq!(s, 404);
    // only the invitee can accept
    let (s, _) = env
        .call(
            "POST",
            &format!("/v1/shares/{share1}/accept"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = env
        .call(
            "POST",
            &format!("/v1/shares/{share1}/accept"),
            Some(&guest),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let share2 = env
        .share(&owner, &d2, "guest@example.com", &guest, "member")
        .await;
    let (_, v) = env.call("GET", "/v1/bindings", Some(&guest), None).await;
    let mut roles: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["did"].as_str().unwrap().into(),
                b["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    roles.sort();
    let mut want = vec![
        (d1.clone(), "guest".to_string()),
        (d2.clone(), "member".to_string()),
    ];
    want.sort();
    assert_eq!(roles, want);

    // guest reads but cannot command; member commands
    let mut dev1 = Dev::connect(&env.srv, &d1, &s1).await;
    let mut dev2 = Dev::connect(&env.srv, &d2, &s2).await;
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{d1}/history"),
            Some(&guest),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{d1}/commands"),
            Some(&guest),
            Some(json!({"set": {"power": true}})),
        )
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{d2}/commands"),
            Some(&guest),
            Some(json!({"set": {"power": true}})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    // neither may share or mint bind tokens
    let (s, _) = env
        .call(
            "POST",
            &format!("/v1/devices/{d2}/shares"),
            Some(&guest),
            Some(json!({"user": "owner@example.com", "role": "guest"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = env
        .call(
            "POST",
            &format!("/v1/devices/{d2}/bind-tokens"),
            Some(&guest),
            None,
        )
        .await;
    assert_eq!(s, 403);

    // the guest's live push carries both devices
    let mut ws = env.ws(&guest, false).await;
    dev1.report(json!({"level": 10})).await;
    let m = ws.next_kind("status").await;
    assert_eq!(
        (m["did"].as_str(), &m["values"]),
        (Some(d1.as_str()), &json!({"level": 10}))
    );

    // the owner lists the device's shares with the invitee's name
    let (s, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{d1}/shares"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["share_id"], share1.as_str());
    assert_eq!(v["data"][0]["user"], "guest@example.com");
    assert_eq!(v["data"][0]["status"], "accepted");
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{d1}/shares"),
            Some(&guest),
            None,
        )
        .await;
    assert_eq!(s, 403);

    // revoking the guest share stops d1 at once: the next message is d2's report
    let (s, v) = env
        .call(
            "DELETE",
            &format!("/v1/devices/{d1}/shares/{share1}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    dev1.report(json!({"level": 20})).await;
    dev2.report(json!({"level": 30})).await;
    let m = ws.next_kind("status").await;
    assert_eq!(
        (m["did"].as_str(), &m["values"]),
        (Some(d2.as_str()), &json!({"level": 30}))
    );
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{d1}"), Some(&guest), None)
        .await;
    assert_eq!(s, 404);

    // the member removes their own share; the owner keeps the device
    let (s, _) = env
        .call("DELETE", &format!("/v1/bindings/{d2}"), Some(&guest), None)
        .await;
    assert_eq!(s, 200);
    let (_, v) = env.call("GET", "/v1/shares", Some(&guest), None).await;
    assert_eq!(v["meta"]["total"], 0, "{v}");
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{d2}"), Some(&owner), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call(
            "DELETE",
            &format!("/v1/devices/{d2}/shares/{share2}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // the invitee may decline an offer; the owner may offer again
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{d1}/shares"),
            Some(&owner),
            Some(json!({"user": "guest@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let offer = v["share_id"].as_str().unwrap().to_owned();
    let (s, _) = env
        .call("DELETE", &format!("/v1/shares/{offer}"), Some(&owner), None)
        .await;
    assert_eq!(s, 404);
    let (s, v) = env
        .call("DELETE", &format!("/v1/shares/{offer}"), Some(&guest), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("declined")));
    let (_, v) = env.call("GET", "/v1/shares", Some(&guest), None).await;
    assert_eq!(v["meta"]["total"], 0, "{v}");

    // a one-time bind token adds a member, once
    let (s, t) = env
        .call(
            "POST",
            &format!("/v1/devices/{d2}/bind-tokens"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert!(t["expires_at"].as_i64().unwrap() > now_ms());
    let body = json!({"did": d2, "token": t["token"]});
    let (s, v) = env
        .call("POST", "/v1/bindings", Some(&guest), Some(body.clone()))
        .await;
    assert_eq!((s, v["role"].as_str()), (201, Some("member")), "{v}");
    let (third, _) = env.user("third@example.com").await;
    let (s, _) = env
        .call("POST", "/v1/bindings", Some(&third), Some(body))
        .await;
    assert_eq!(s, 404);

    // the owner unbinding removes everyone
    let (s, _) = env
        .call("DELETE", &format!("/v1/bindings/{d2}"), Some(&owner), None)
        .await;
    assert_eq!(s, 200);
    for action in [
        "device.share",
        "device.share_accept",
        "device.share_revoke",
        "device.unbind",
        "device.bind_token",
        "device.command",
    ] {
        let rows = env.audit(action).await;
        assert!(
            rows.iter()
                .any(|r| r.actor_kind == "user" && r.source_ip.is_some()),
            "{action}: {rows:?}"
        );
    }
    for t in [&owner, &guest] {
        let (s, _) = env
            .call("GET", &format!("/v1/devices/{d2}"), Some(t), None)
            .await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn sharing_to_an_address_without_account_answers_like_any_share_and_invites() {
    let env = Env::start().await;
    let (owner, _) = env.user("owner@example.com").await;
    let (_member, _) = env.user("member@example.com").await;
    let (did, _, passcode) = env.device().await;
    assert_eq!(env.bind(&owner, &did, &passcode).await.0, 201);
    let path = format!("/v1/devices/{did}/shares");
    let share = |to: &'static str| {
        env.call(
            "POST",
            &path,
            Some(&owner),
            Some(json!({"user": to, "role": "member"})),
        )
    };
    // a registered address and an unregistered one: the same answer
    let (s_known, known) = share("member@example.com").await;
    let (s_new, new) = share("newcomer@example.com").await;
    assert_eq!((s_known, s_new), (201, 201), "{known} {new}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&known), keys(&new));
    let invited = new["share_id"].as_str().unwrap().to_owned();
    // offered twice: the same conflict as for a registered address
    let (s, v) = share("newcomer@example.com").await;
    assert_error(s, &v, 409, "CONFLICT");
    // the owner sees both as pending
    let (_, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}/shares"),
            Some(&owner),
            None,
        )
        .await;
    let pending: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["pending", "pending"], "{v}");
    // the address receives an invitation to sign up (no code)
    let deadline = Instant::now() + Duration::from_secs(15);
    while env
        .outbox("newcomer@example.com", "share_invite")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no invitation sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(env.outbox("newcomer@example.com", "share_invite")[0]
        .get("code")
        .is_none());
    // once signed up, the newcomer finds the offer pending and can accept it
    let (newcomer, _) = env.user("newcomer@example.com").await;
    let (_, v) = env.call("GET", "/v1/shares", Some(&newcomer), None).await;
    assert_eq!(v["data"][0]["share_id"], invited.as_str(), "{v}");
    assert_eq!(v["data"][0]["status"], "pending");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/shares/{invited}/accept"),
            Some(&newcomer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&newcomer), None)
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn cross_user_attempts_on_device_endpoints_answer_404() {
    let env = Env::start().await;
    let (owner, _) = env.user("owner@example.com").await;
    let (other, _) = env.user("other@example.com").await;
    let (did, _, passcode) = env.device().await;
    assert_eq!(env.bind(&owner, &did, &passcode).await.0, 201);
    let unknown = "zzzzzzzzzzzzzzzzzzzz";
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/devices/{did}".into(), None),
        ("GET", "/v1/devices/{did}/history".into(), None),
        (
            "POST",
            "/v1/devices/{did}/commands".into(),
            Some(json!({"action": "reboot"})),
        ),
        ("POST", "/v1/devices/{did}/bind-tokens".into(), None),
        (
            "POST",
            "/v1/devices/{did}/shares".into(),
            Some(json!({"user": "other@example.com", "role": "guest"})),
        ),
        ("DELETE", "/v1/devices/{did}/shares/sh_x".into(), None),
        ("DELETE", "/v1/bindings/{did}".into(), None),
    ];
    for (m, path, body) in calls {
        let (s1, v1) = env
            .call(m, &path.replace("{did}", &did), Some(&other), body.clone())
            .await;
        let (s2, v2) = env
            .call(m, &path.replace("{did}", unknown), Some(&other), body)
            .await;
        assert_eq!((s1, s2), (404, 404), "{m} {path}: {v1} / {v2}");
        assert_eq!(v1, v2, "{m} {path}");
        assert_eq!(v1["error"]["code"], "NOT_FOUND");
    }
    // without a token: 401; with a made-up user token: 401
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{did}"), None, None)
        .await;
    assert_eq!(s, 401);
    let fake = format!("rat_{}", "0".repeat(64));
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&fake), None)
        .await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
    // the owner is unaffected
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&owner), None)
        .await;
    assert_eq!(s, 200);

    // passcode guessing is rate limited per user
    let mut limited = false;
    for _ in 0..12 {
        let (s, v) = env.bind(&other, &did, "WRONGWRONG").await;
        if s == 429 {
            assert_eq!(v["error"]["code"], "RATE_LIMITED");
            limited = true;
            break;
        }
        assert_eq!(s, 404);
    }
    assert!(limited);
    // the limit holds for a right passcode too
    assert_eq!(env.bind(&other, &did, &passcode).await.0, 429);

    // refused reads and commands are audited too
    let denied = env.audit("device.access").await;
    assert!(
        denied
            .iter()
            .filter(
                |r| r.target.as_deref() == Some(format!("device:{did}").as_str())
                    && r.outcome == "denied: device not found"
            )
            .count()
            >= 3,
        "{denied:?}"
    );

    // every bind attempt is audited with the user, the source address and the outcome
    let binds = env.audit("device.bind").await;
    let target = format!("device:{did}");
    assert!(binds.iter().any(|r| r.outcome == "ok role=owner"
        && r.actor_kind == "user"
        && r.target.as_deref() == Some(target.as_str())
        && r.source_ip.as_deref() == Some("127.0.0.1")));
    assert!(binds
        .iter()
        .any(|r| r.outcome.starts_with("refused: rate") || r.outcome.contains("at most")));
    assert!(binds
        .iter()
        .any(|r| r.outcome == "refused: device not found"));
}

#[tokio::test]
async fn refresh_rotation_reuse_and_logout() {
    let env = Env::start().await;
    let email = "rot@example.com";
    let (a1, r1) = env.user(email).await;
    assert!(a1.len() >= 32 + 4 && r1.len() >= 32 + 4);
    let refresh = |t: &str| json!({"refresh_token": t});
    let (s, v) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r1)))
        .await;
    assert_eq!(s, 200, "{v}");
    let (a2, r2) = (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(r1, r2);
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&a2), None).await.0,
        200
    );

    // a second session is independent of the first
    let (other_access, _) = env.login(email, PW).await;

    // replaying the rotated refresh token revokes the whole family
    let (s, v) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r1)))
        .await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
    let (s, _) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r2)))
        .await;
    assert_eq!(s, 401);
    for t in [&a1, &a2] {
        assert_eq!(env.call("GET", "/v1/users/me", Some(t), None).await.0, 401);
    }
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&other_access), None)
            .await
            .0,
        200
    );

    // logout ends one session, logout/all every session; live push closes on revocation
    let (l1, _) = env.login(email, PW).await;
    let (l2, _) = env.login(email, PW).await;
    let mut ws = env.ws(&l2, false).await;
    let (s, _) = env.call("POST", "/v1/logout", Some(&l1), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&l1), None).await.0,
        401
    );
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&l2), None).await.0,
        200
    );
    let (s, v) = env.call("POST", "/v1/logout/all", Some(&l2), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&l2), None).await.0,
        401
    );
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&other_access), None)
            .await
            .0,
        401
    );
    let closed = ws.next().await;
    assert_eq!(closed["closed"], 4401, "{closed}");
    // live push needs a WebSocket upgrade (answered in the JSON error format)
    let (l3, _) = env.login(email, PW).await;
    let (s, v) = env.call("GET", "/v1/ws", Some(&l3), None).await;
    assert_error(s, &v, 426, "UPGRADE_REQUIRED");
    // a revoked token cannot open live push
    let req = format!("wss://localhost:{}/v1/ws?access_token={l2}", env.srv.http)
        .into_client_request()
        .unwrap();
    let err = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(ws_tls(&env.srv))),
    )
    .await
    .unwrap_err();
    match err {
        tungstenite::Error::Http(r) => assert_eq!(r.status().as_u16(), 401),
        e => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn lockout_answers_like_an_unknown_user() {
    let env = Env::start().await;
    let email = "lock@example.com";
    env.user(email).await;
    let wrong = "velvet tundra oxide lantexn";
    let (s, unknown) = env.try_login("nobody@example.com", wrong).await;
    assert_eq!(s, 401);
    for _ in 0..5 {
        let (s, v) = env.try_login(email, wrong).await;
        assert_eq!((s, &v), (401, &unknown));
    }
    // locked: even the right password gets the same answer
    let (s, v) = env.try_login(email, PW).await;
    assert_eq!((s, &v), (401, &unknown));
    let (s, v) = env.try_login("nobody@example.com", PW).await;
    assert_eq!((s, &v), (401, &unknown));
    assert_eq!(unknown["error"]["code"], "UNAUTHORIZED");
    // a malformed user name answers the same too
    let (s, v) = env.try_login("not a name", PW).await;
    assert_eq!((s, &v), (401, &unknown));

    // audited: failures with their reason, one lockout, and the logins that worked
    let logins = env.audit("user.login").await;
    let failed = |d: &str| {
        logins
            .iter()
            .filter(|r| r.outcome == "failed" && r.detail.as_deref() == Some(d))
            .count()
    };
    assert_eq!(failed("wrong password"), 5);
    assert_eq!(failed("locked"), 1);
    assert_eq!(failed("unknown user"), 3);
    assert_eq!(logins.iter().filter(|r| r.outcome == "ok").count(), 1);
    let locks = env.audit("user.lockout").await;
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].actor_kind, "user");
    assert_eq!(locks[0].source_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn password_policy_codes_and_reset() {
    let env = Env::start().await;
    let weak = [
        ("short pass", "at least 12"),
        ("Password1234", "common"),
        ("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "guess"),
        ("carol.jones lantern oxide", "e-mail"),
    ];
    for (pw, rule) in weak {
        let (s, v) = env
            .call(
                "POST",
                "/v1/users",
                None,
                Some(json!({"email": "carol.jones@example.com", "password": pw})),
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("WEAK_PASSWORD")),
            "{pw}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(rule),
            "{pw}: {v}"
        );
    }
    let (s, v) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"phone": "+15551234567", "password": "velvet 5551234567 tundra"})),
        )
        .await;
    assert_error(s, &v, 400, "WEAK_PASSWORD");
    // strict bodies
    let (s, v) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": "c@example.com", "password": PW, "admin": true})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_JSON");

    // a phone account: wrong codes use the code up
    let phone = "+15551234567";
    let (s, _) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"phone": phone, "password": PW})),
        )
        .await;
    assert_eq!(s, 201);
    let code = env.code(phone, "activate", 0).await;
    let msg = &env.outbox(phone, "activate")[0];
    assert_eq!(msg["channel"], "sms");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (s, v) = env
            .call(
                "POST",
                "/v1/users/activate",
                None,
                Some(json!({"phone": phone, "code": wrong})),
            )
            .await;
        assert_error(s, &v, 400, "INVALID_CODE");
    }
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"phone": phone, "code": code})),
        )
        .await;
    assert_eq!(s, 400, "the code is dead after five wrong guesses");
    // a new code, at most one a minute
    let resend = json!({"phone": phone});
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/activate/resend",
            None,
            Some(resend.clone()),
        )
        .await;
    assert_eq!(s, 202);
    let (s, v) = env
        .call("POST", "/v1/users/activate/resend", None, Some(resend))
        .await;
    assert_error(s, &v, 429, "RATE_LIMITED");
    let code = env.code(phone, "activate", 1).await;
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"phone": phone, "code": code})),
        )
        .await;
    assert_eq!(s, 200);
    let (a1, _) = env.login(phone, PW).await;
    let (a2, _) = env.login(phone, PW).await;

    // change password: the old one must verify, the new one obeys the policy, other sessions end
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/me/password",
            Some(&a1),
            Some(json!({"old_password": PW, "new_password": "password1234"})),
        )
        .await;
    assert_error(s, &v, 400, "WEAK_PASSWORD");
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/me/password",
            Some(&a1),
            Some(json!({"old_password": "not my password", "new_password": "amber gravel quiet harbor"})),
        )
        .await;
    assert_eq!(s, 403);
    let pw2 = "amber gravel quiet harbor";
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/me/password",
            Some(&a1),
            Some(json!({"old_password": PW, "new_password": pw2})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&a1), None).await.0,
        200
    );
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&a2), None).await.0,
        401
    );
    assert_eq!(env.try_login(phone, PW).await.0, 401);

    // reset: 202 whether or not the account exists; the code sets a new password and ends sessions
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/password/reset",
            None,
            Some(json!({"email": "ghost@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/password/reset",
            None,
            Some(json!({"phone": phone})),
        )
        .await;
    assert_eq!(s, 202);
    let code = env.code(phone, "password_reset", 0).await;
    let pw3 = "cobalt meadow rusty anchor";
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/password/reset/confirm",
            None,
            Some(json!({"phone": phone, "code": code, "password": pw3})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&a1), None).await.0,
        401
    );
    assert_eq!(env.try_login(phone, pw2).await.0, 401);
    env.login(phone, pw3).await;
    assert!(env.outbox("ghost@example.com", "password_reset").is_empty());
}

#[tokio::test]
async fn expired_access_token_closes_live_push() {
    let env = Env::start_with(&[("RAMPART_ACCOUNTS__ACCESS_TTL_SECS", "1")]).await;
    let (access, refresh) = env.user("short@example.com").await;
    let mut ws = env.ws(&access, true).await;
    // the server closes the socket when the token expires (about a second from now)
    let closed = ws.next().await;
    assert_eq!(closed["closed"], 4401, "{closed}");
    let (s, _) = env.call("GET", "/v1/users/me", Some(&access), None).await;
    assert_eq!(s, 401);
    // the refresh token still works and issues a fresh access token
    let (s, v) = env
        .call(
            "POST",
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!((s, &v["expires_in"]), (200, &json!(1)), "{v}");
}

#[tokio::test]
async fn sms_codes_go_to_the_configured_webhook() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // a one-request SMS provider
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", l.local_addr().unwrap());
    let provider = tokio::spawn(async move {
        let (mut sock, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let body = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "provider connection closed early");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    assert!(head.to_ascii_lowercase().contains("bearer sms-secret"));
                    break body.to_owned();
                }
            }
        };
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    });
    let env = Env::start_with(&[
        ("RAMPART_NOTIFY__SMS", "webhook"),
        ("RAMPART_NOTIFY__WEBHOOK__URL", &url),
        ("RAMPART_NOTIFY__WEBHOOK__TOKEN", "sms-secret"),
    ])
    .await;
    let phone = "+15557654321";
    let (s, _) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"phone": phone, "password": PW})),
        )
        .await;
    assert_eq!(s, 201);
    let msg = tokio::time::timeout(Duration::from_secs(15), provider)
        .await
        .expect("the provider was not called")
        .unwrap();
    assert_eq!(
        (msg["to"].as_str(), msg["purpose"].as_str()),
        (Some(phone), Some("activate"))
    );
    let code = msg["code"].as_str().unwrap();
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"phone": phone, "code": code})),
        )
        .await;
    assert_eq!(s, 200);
    env.login(phone, PW).await;
    // nothing went to the outbox
    assert!(env.outbox(phone, "activate").is_empty());
}

/// The main consumer flow against the PostgreSQL backend (skipped, with the reason printed, when
/// `RAMPART_TEST_POSTGRES_URL` is unset): sign-up, activation, login, bind, a command acknowledged
/// by the device, and refresh-token reuse detection.
#[tokio::test]
async fn consumer_flow_on_postgresql() {
    let Some(pg) = PgSchema::create("consumer_flow_on_postgresql") else {
        return;
    };
    let store_url = pg.store_url();
    let env = Env::start_with(&[("RAMPART_STORE__URL", store_url.as_str())]).await;
    let (s, v) = env.srv.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["store"].as_str()), (200, Some("postgres")), "{v}");
    let (did, secret, passcode) = env.device().await;
    let (a1, r1) = env.user("pg@example.com").await;
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"email": "pg@example.com", "code": "000000"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("INVALID_CODE")),
        "a used code is gone"
    );
    let (s, v) = env.bind(&a1, &did, "AAAAAAAAAA").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = env.bind(&a1, &did, &passcode).await;
    assert_eq!((s, v["role"].as_str()), (201, Some("owner")), "{v}");
    let (_, v) = env.call("GET", "/v1/bindings", Some(&a1), None).await;
    assert_eq!(v["meta"]["total"], 1, "{v}");

    // live push and a command the device acknowledges
    let mut ws = env.ws(&a1, true).await;
    let mut dev = Dev::connect(&env.srv, &did, &secret).await;
    // (level moves in steps of 5: a report the model refuses would be acknowledged and dropped)
    dev.report(json!({"power": true, "level": 10})).await;
    let m = ws.next_kind("status").await;
    assert_eq!(m["values"], json!({"power": true, "level": 10}));
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(&a1),
            Some(json!({"set": {"power": false}})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let a = ws.next_kind("ack").await;
    assert_eq!(a["id"], v["id"]);
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&a1), None)
        .await;
    assert_eq!((s, &v["state"]["level"]), (200, &json!(10)), "{v}");

    // refresh rotates; the spent refresh token presented again revokes the whole login
    let refresh = |t: &str| json!({"refresh_token": t});
    let (s, v) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r1)))
        .await;
    assert_eq!(s, 200, "{v}");
    let a2 = v["access_token"].as_str().unwrap().to_owned();
    let r2 = v["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        env.call("GET", "/v1/users/me", Some(&a2), None).await.0,
        200
    );
    let (s, _) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r1)))
        .await;
    assert_eq!(s, 401);
    for t in [&a1, &a2] {
        assert_eq!(env.call("GET", "/v1/users/me", Some(t), None).await.0, 401);
    }
    let (s, _) = env
        .call("POST", "/v1/token/refresh", None, Some(refresh(&r2)))
        .await;
    assert_eq!(s, 401);
    let closed = ws.next_kind("none: wait for the close").await;
    assert_eq!(closed["closed"], 4401, "{closed}");
    drop(dev);
    drop(env);
    drop(pg);
}

/// The audit store of a server: its SQLite file, or the PostgreSQL schema it runs on.
async fn audit_store(env: &Env, pg: Option<&PgSchema>) -> rampart_store::Store {
    match pg {
        Some(pg) => rampart_store::Store::open(&pg.store_url()).await.unwrap(),
        None => rampart_store::Store::open_sqlite(&env.srv.data().join("rampart.db"))
            .await
            .unwrap(),
    }
}

/// 80 concurrent wrong passwords for one account, then the right one. Every try is claimed in
/// the store before its comparison: five are compared and lock the account, the other 75 (and
/// the right password after them) meet the lock.
async fn wrong_password_storm(env: &Env, pg: Option<&PgSchema>) {
    let email = "storm@example.com";
    env.user(email).await;
    let wrong = "velvet tundra oxide lantexn";
    let answers =
        futures_util::future::join_all((0..80).map(|_| env.try_login(email, wrong))).await;
    for (s, v) in &answers {
        assert_eq!(*s, 401, "{v}");
    }
    let (s, v) = env.try_login(email, PW).await;
    assert_eq!(s, 401, "the lockout engaged: {v}");
    let store = audit_store(env, pg).await;
    let logins = store.list_audit(Some("user.login"), 1000).await.unwrap();
    let failed = |d: &str| {
        logins
            .iter()
            .filter(|r| r.outcome == "failed" && r.detail.as_deref() == Some(d))
            .count()
    };
    assert_eq!(
        (failed("wrong password"), failed("locked")),
        (5, 76),
        "compared, refused by the lock"
    );
    let locks = store.list_audit(Some("user.lockout"), 100).await.unwrap();
    assert_eq!(locks.len(), 1);
    store.close().await;
}

/// 80 concurrent activation tries with the right code at a random position: the store hands the
/// code to at most five of them, so at most five are compared and the right one gets through
/// only when it is among those five. Returns whether it did.
async fn code_guess_storm(env: &Env, pg: Option<&PgSchema>) -> bool {
    let email = "guess@example.com";
    let (s, v) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let code = env.code(email, "activate", 0).await;
    let right_at = (now_ms() % 80) as usize;
    let right: u32 = code.parse().unwrap();
    let guesses: Vec<String> = (0..80u32)
        .map(|i| {
            if i as usize == right_at {
                code.clone()
            } else {
                format!("{:06}", (right + 1 + i) % 1_000_000)
            }
        })
        .collect();
    let answers = futures_util::future::join_all(guesses.iter().map(|g| {
        env.call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"email": email, "code": g})),
        )
    }))
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    for (s, v) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_error(*s, v, 400, "INVALID_CODE");
    }
    assert!(ok <= 1, "a code was spent {ok} times");
    let store = audit_store(env, pg).await;
    let row = store.get_code(email, "activate").await.unwrap();
    store.close().await;
    if ok == 0 {
        // five tries claimed (hence at most five compared), the code dead for the right guess too
        assert_eq!(row.map(|r| r.attempts), Some(5));
        let (s, v) = env
            .call(
                "POST",
                "/v1/users/activate",
                None,
                Some(json!({"email": email, "code": code})),
            )
            .await;
        assert_error(s, &v, 400, "INVALID_CODE");
    } else {
        assert!(row.is_none(), "a spent code is gone");
    }
    ok == 1
}

/// Racing guesses of a password or a one-time code are each counted before they are compared
/// (SQLite store).
#[tokio::test]
async fn concurrent_guesses_are_counted_before_compared() {
    let env = Env::start_with(&[("RAMPART_LIMITS__PASSWORD_HASH_QUEUE", "1000")]).await;
    wrong_password_storm(&env, None).await;
    code_guess_storm(&env, None).await;
}

/// The same on the PostgreSQL store (skipped, with the reason printed, when
/// `RAMPART_TEST_POSTGRES_URL` is unset).
#[tokio::test]
async fn concurrent_guesses_are_counted_before_compared_on_postgresql() {
    let Some(pg) = PgSchema::create("concurrent_guesses_are_counted_before_compared_on_postgresql")
    else {
        return;
    };
    let store_url = pg.store_url();
    let env = Env::start_with(&[
        ("RAMPART_STORE__URL", store_url.as_str()),
        ("RAMPART_LIMITS__PASSWORD_HASH_QUEUE", "1000"),
    ])
    .await;
    wrong_password_storm(&env, Some(&pg)).await;
    code_guess_storm(&env, Some(&pg)).await;
}
