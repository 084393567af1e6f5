//! OAuth2 against the real binary: Rampart as an authorisation server for a third
//! party (JSON approval and the HTML consent page, code and refresh grants, revocation, scopes on
//! the device endpoints), and login through an OpenID Connect provider that the test runs itself
//! on loopback.

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PW: &str = "velvet tundra oxide lantern";
const CB: &str = "https://client.example/cb";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A PKCE pair: (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let v = format!("v-{}-{}", nonce(), "x".repeat(40));
    let c = b64(&Sha256::digest(v.as_bytes()));
    (v, c)
}

/// The query parameters of a URL.
fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A server with a product, an app, and helpers for users, devices and clients.
struct Env {
    srv: Server,
    app: String,
    pk: String,
    ps: String,
    /// An HTTPS client that does not follow redirects.
    raw: reqwest::Client,
}

impl Env {
    async fn start_with(vars: &[(&str, &str)]) -> Env {
        let srv = Server::start_with(vars).await;
        let (pk, ps) = srv.product(true, false).await;
        let (s, v) = srv
            .admin(
                "POST",
                "/v1/apps",
                Some(json!({"name": "Lamp app", "product_keys": [pk]})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let pem = std::fs::read(srv.ca_path()).unwrap();
        let raw = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Env {
            app: v["app_id"].as_str().unwrap().into(),
            srv,
            pk,
            ps,
            raw,
        }
    }

    async fn start() -> Env {
        Env::start_with(&[]).await
    }

    async fn call(
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

    /// Wait for the activation code sent to `to`.
    async fn code(&self, to: &str) -> String {
        self.code_of(to, "activate").await
    }

    /// Wait for the code of `purpose` sent to `to`.
    async fn code_of(&self, to: &str, purpose: &str) -> String {
        let dir = self.srv.data().join("outbox");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = std::fs::read_dir(&dir).ok().and_then(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok()
                    })
                    .find(|v| v["to"] == to && v["purpose"] == purpose)
            });
            if let Some(v) = found {
                return v["code"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no {purpose} code for {to}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sign up and activate `email`; returns its access token.
    async fn user(&self, email: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/users",
                None,
                Some(json!({"email": email, "password": PW})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let code = self.code(email).await;
        let (s, v) = self
            .call(
                "POST",
                "/v1/users/activate",
                None,
                Some(json!({"email": email, "code": code})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = self
            .call(
                "POST",
                "/v1/login",
                None,
                Some(json!({"username": email, "password": PW})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().into()
    }

    /// A device owned by the holder of `token`; returns its did.
    async fn owned_device(&self, token: &str) -> String {
        let (did, _, passcode) = self
            .srv
            .register(&self.pk, &self.ps, &format!("hw-{}", nonce()))
            .await;
        let (s, v) = self
            .call(
                "POST",
                "/v1/bindings",
                Some(token),
                Some(json!({"did": did, "passcode": passcode})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        did
    }

    /// Register a client; returns (client_id, client_secret).
    async fn client(&self, scopes: &[&str]) -> (String, String) {
        let (s, v) = self
            .srv
            .admin(
                "POST",
                "/v1/oauth/clients",
                Some(json!({"name": "Voice assistant", "redirect_uris": [CB, "http://127.0.0.1:9/cb"],
                            "scopes": scopes})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let secret = v["client_secret"].as_str().unwrap().to_owned();
        assert!(secret.len() >= 32);
        (v["client_id"].as_str().unwrap().into(), secret)
    }

    /// The JSON approval by the user holding `token`.
    async fn approve(&self, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", "/oauth/authorize", Some(token), Some(body))
            .await
    }

    /// Approve `scope` for `client`; returns (code, verifier).
    async fn code_for(&self, token: &str, client: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let (s, v) = self
            .approve(
                token,
                json!({"response_type": "code", "client_id": client, "redirect_uri": CB,
                       "scope": scope, "state": "st-1", "code_challenge": challenge,
                       "code_challenge_method": "S256"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let to = v["redirect_to"].as_str().unwrap();
        assert!(to.starts_with(&format!("{CB}?")), "{to}");
        let q = query(to);
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["code"], v["code"].as_str().unwrap());
        (q["code"].clone(), verifier)
    }

    /// `POST /oauth/token` (or another form endpoint) with Basic client authentication.
    async fn form(
        &self,
        path: &str,
        client: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut rb = self.srv.http_client.post(self.srv.url(path)).form(form);
        if let Some((id, secret)) = client {
            rb = rb.basic_auth(id, Some(secret));
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn exchange(
        &self,
        client: (&str, &str),
        code: &str,
        verifier: &str,
        redirect: &str,
    ) -> (u16, Value) {
        self.form(
            "/oauth/token",
            Some(client),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// A fresh grant's token response.
    async fn tokens(&self, user: &str, client: (&str, &str), scope: &str) -> Value {
        let (code, verifier) = self.code_for(user, client.0, scope).await;
        let (s, v) = self.exchange(client, &code, &verifier, CB).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["scope"], scope);
        assert!(v["access_token"].as_str().unwrap().starts_with("roa_"));
        assert!(v["refresh_token"].as_str().unwrap().starts_with("ror_"));
        v
    }
}

fn tok(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn third_party_reaches_only_what_the_user_may_within_its_scopes() {
    let env = Env::start().await;
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let mine = env.owned_device(&alice).await;
    let bobs = env.owned_device(&bob).await;
    let shared = env.owned_device(&bob).await;
    // bob shares one device with alice as a guest (read only)
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{shared}/shares"),
            Some(&bob),
            Some(json!({"user": "alice@example.com", "role": "guest"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let share = tok(&v, "share_id");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/shares/{share}/accept"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // only the owner concept (the admin today) registers clients, with safe redirect URIs
    let body = json!({"name": "x", "redirect_uris": [CB], "scopes": ["devices:read"]});
    let (s, _) = env
        .call("POST", "/v1/oauth/clients", Some(&alice), Some(body))
        .await;
    assert_eq!(s, 401);
    for (uris, scopes) in [
        (json!(["http://client.example/cb"]), json!(["devices:read"])),
        (
            json!(["https://client.example/cb#x"]),
            json!(["devices:read"]),
        ),
        (json!([CB]), json!(["admin"])),
        (json!([CB]), json!([])),
    ] {
        let (s, v) = env
            .srv
            .admin(
                "POST",
                "/v1/oauth/clients",
                Some(json!({"name": "x", "redirect_uris": uris, "scopes": scopes})),
            )
            .await;
        assert_error(s, &v, 400, "INVALID_REQUEST");
    }

    let (id, secret) = env.client(&["devices:read", "devices:control"]).await;
    let client = (id.as_str(), secret.as_str());

    // a read-only grant
    let read = env.tokens(&alice, client, "devices:read").await;
    let rt = tok(&read, "access_token");
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{mine}"), Some(&rt), None)
        .await;
    assert_eq!((s, v["did"].as_str()), (200, Some(mine.as_str())), "{v}");
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{mine}/history"),
            Some(&rt),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env.call("GET", "/v1/bindings", Some(&rt), None).await;
    assert_eq!(s, 200, "{v}");
    let mut dids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["did"].as_str().unwrap())
        .collect();
    dids.sort();
    let mut want = vec![mine.as_str(), shared.as_str()];
    want.sort();
    assert_eq!(dids, want);
    // each successful read is on record: the client and the user, what was read, the grant
    let store = rampart_store::Store::open_sqlite(&env.srv.data().join("rampart.db"))
        .await
        .unwrap();
    let reads = store.list_audit(Some("oauth.access"), 10).await.unwrap();
    store.close().await;
    let seen: Vec<(&str, &str)> = reads
        .iter()
        .map(|r| (r.actor_kind.as_str(), r.target.as_deref().unwrap_or("")))
        .collect();
    let me = format!("device:{mine}");
    assert_eq!(
        seen.iter()
            .filter(|(k, t)| *k == "oauth_client" && *t == me)
            .count(),
        2,
        "the device and its history: {reads:?}"
    );
    assert!(
        seen.iter().any(|(_, t)| t.starts_with("user:")),
        "{reads:?}"
    );
    for r in &reads {
        assert!(r.actor_id.starts_with(&format!("{id}/")), "{r:?}");
        let d = r.detail.as_deref().unwrap_or("");
        assert!(
            d.starts_with("grant=") && d.contains("scope=devices:read"),
            "{r:?}"
        );
    }
    let cmd = json!({"set": {"power": true}});
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{mine}/commands"),
            Some(&rt),
            Some(cmd.clone()),
        )
        .await;
    assert_error(s, &v, 403, "INSUFFICIENT_SCOPE");
    // another user's device is as unknown as a missing one
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{bobs}"), Some(&rt), None)
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");
    // everything that is not a device endpoint refuses the token
    for (m, path) in [
        ("GET", "/v1/users/me"),
        ("GET", "/v1/shares"),
        ("GET", "/v1/oauth/grants"),
        ("GET", "/v1/products"),
        ("POST", "/v1/logout"),
    ] {
        let (s, _) = env.call(m, path, Some(&rt), None).await;
        assert_eq!(s, 401, "{m} {path}");
    }
    let (s, _) = env
        .approve(&rt, json!({"client_id": id, "redirect_uri": CB}))
        .await;
    assert_eq!(s, 401);

    // a control grant reaches the command path (the device is offline), except on a guest share
    let ctl = env
        .tokens(&alice, client, "devices:read devices:control")
        .await;
    let ct = tok(&ctl, "access_token");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{mine}/commands"),
            Some(&ct),
            Some(cmd.clone()),
        )
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{shared}/commands"),
            Some(&ct),
            Some(cmd.clone()),
        )
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, _) = env
        .call(
            "POST",
            &format!("/v1/devices/{bobs}/commands"),
            Some(&ct),
            Some(cmd),
        )
        .await;
    assert_eq!(s, 404);
    // a control-only grant cannot read
    let only = env.tokens(&alice, client, "devices:control").await;
    let (s, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{mine}"),
            Some(&tok(&only, "access_token")),
            None,
        )
        .await;
    assert_error(s, &v, 403, "INSUFFICIENT_SCOPE");

    // the user sees the grants, revokes one, and its tokens die at once
    let (s, v) = env
        .call("GET", "/v1/oauth/grants", Some(&alice), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"]["total"], 3, "{v}");
    let g = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scope"] == "devices:read devices:control")
        .unwrap();
    assert_eq!(g["client_name"], "Voice assistant");
    let gid = tok(g, "grant_id");
    let (s, _) = env
        .call(
            "DELETE",
            &format!("/v1/oauth/grants/{gid}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 404, "another user cannot revoke it");
    let (s, v) = env
        .call(
            "DELETE",
            &format!("/v1/oauth/grants/{gid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{mine}"), Some(&ct), None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = env
        .form(
            "/oauth/token",
            Some(client),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tok(&ctl, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v) = env
        .call("GET", "/v1/oauth/grants", Some(&alice), None)
        .await;
    assert_eq!((s, v["meta"]["total"].as_i64()), (200, Some(2)), "{v}");
    // the read grant is untouched
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{mine}"), Some(&rt), None)
        .await;
    assert_eq!(s, 200);

    // recovering the account by password reset ends every grant
    let (s, _) = env
        .call(
            "POST",
            "/v1/users/password/reset",
            None,
            Some(json!({"email": "alice@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
    let code = env.code_of("alice@example.com", "password_reset").await;
    let (s, v) = env
        .call(
            "POST",
            "/v1/users/password/reset/confirm",
            None,
            Some(json!({"email": "alice@example.com", "code": code,
                        "password": "amber gravel quiet harbor"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env
        .call("GET", &format!("/v1/devices/{mine}"), Some(&rt), None)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_client_redirect_and_verifier() {
    let env = Env::start().await;
    let alice = env.user("carol@example.com").await;
    let (id, secret) = env.client(&["devices:read"]).await;
    let client = (id.as_str(), secret.as_str());
    let (other_id, other_secret) = env.client(&["devices:read"]).await;

    // a second use of a code fails and revokes what the first use issued
    let (code, verifier) = env.code_for(&alice, &id, "devices:read").await;
    let (s, first) = env.exchange(client, &code, &verifier, CB).await;
    assert_eq!(s, 200, "{first}");
    let (s, v) = env.exchange(client, &code, &verifier, CB).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(v["error_description"].is_string());
    let (s, _) = env
        .call(
            "GET",
            "/v1/bindings",
            Some(&tok(&first, "access_token")),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = env
        .form(
            "/oauth/token",
            Some(client),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tok(&first, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(s, 400);

    // wrong verifier, wrong redirect_uri, another client: refused (and the code is spent)
    let (code, _) = env.code_for(&alice, &id, "devices:read").await;
    let (wrong, _) = pkce();
    let (s, v) = env.exchange(client, &code, &wrong, CB).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (code, verifier) = env.code_for(&alice, &id, "devices:read").await;
    let (s, v) = env
        .exchange(client, &code, &verifier, "http://127.0.0.1:9/cb")
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (code, verifier) = env.code_for(&alice, &id, "devices:read").await;
    let (s, v) = env
        .exchange((&other_id, &other_secret), &code, &verifier, CB)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // bad client credentials: 401 invalid_client, with a Basic challenge
    let (code, verifier) = env.code_for(&alice, &id, "devices:read").await;
    let resp = env
        .srv
        .http_client
        .post(env.srv.url("/oauth/token"))
        .basic_auth(&id, Some("rcs_wrong"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CB),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    // client credentials in the form work too (this code is still unused)
    let (s, v) = env
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &verifier),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // other grant types do not exist
    for gt in ["password", "client_credentials", "implicit", "urn:x"] {
        let (s, v) = env
            .form(
                "/oauth/token",
                Some(client),
                &[
                    ("grant_type", gt),
                    ("username", "carol@example.com"),
                    ("password", PW),
                ],
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("unsupported_grant_type")),
            "{gt}: {v}"
        );
    }
    let (s, v) = env
        .form("/oauth/token", Some(client), &[("code", "x")])
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    // authorisation requests that are refused: plain PKCE, no PKCE, implicit, unknown scope
    let (_, challenge) = pkce();
    let base = json!({"response_type": "code", "client_id": id, "redirect_uri": CB,
                      "scope": "devices:read", "state": "s9", "code_challenge": challenge,
                      "code_challenge_method": "S256"});
    for (k, val, code, err) in [
        (
            "code_challenge_method",
            json!("plain"),
            "INVALID_REQUEST",
            "invalid_request",
        ),
        (
            "code_challenge_method",
            Value::Null,
            "INVALID_REQUEST",
            "invalid_request",
        ),
        (
            "code_challenge",
            json!("short"),
            "INVALID_REQUEST",
            "invalid_request",
        ),
        (
            "response_type",
            json!("token"),
            "UNSUPPORTED_RESPONSE_TYPE",
            "unsupported_response_type",
        ),
        (
            "scope",
            json!("devices:admin"),
            "INVALID_SCOPE",
            "invalid_scope",
        ),
        (
            "scope",
            json!("devices:control"),
            "INVALID_SCOPE",
            "invalid_scope",
        ),
    ] {
        let mut b = base.clone();
        b[k] = val;
        let (s, v) = env.approve(&alice, b).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{k}: {v}"
        );
        let q = query(v["redirect_to"].as_str().unwrap());
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str()),
            (err, "s9"),
            "{k}"
        );
    }
    // an unregistered redirect URI or unknown client is never redirected to
    for (k, val) in [
        ("redirect_uri", json!("https://client.example/cb/")),
        ("redirect_uri", json!("https://evil.example/cb")),
        ("client_id", json!("rcl_nobody")),
    ] {
        let mut b = base.clone();
        b[k] = val;
        let (s, v) = env.approve(&alice, b).await;
        assert_error(s, &v, 400, "INVALID_CLIENT");
        assert!(v.get("redirect_to").is_none());
    }
    // the user denies: back to the client with access_denied
    let mut b = base.clone();
    b["decision"] = json!("deny");
    let (s, v) = env.approve(&alice, b).await;
    assert_eq!(s, 200);
    assert_eq!(
        query(v["redirect_to"].as_str().unwrap())["error"],
        "access_denied"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_reuse_revokes_and_revocation_endpoint() {
    let env = Env::start().await;
    let alice = env.user("dave@example.com").await;
    let did = env.owned_device(&alice).await;
    let (id, secret) = env.client(&["devices:read"]).await;
    let client = (id.as_str(), secret.as_str());
    let refresh = |rt: String| {
        let env = &env;
        async move {
            env.form(
                "/oauth/token",
                Some(client),
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        }
    };
    let dev = format!("/v1/devices/{did}");

    let first = env.tokens(&alice, client, "devices:read").await;
    let (s, second) = refresh(tok(&first, "refresh_token")).await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (s, _) = env
        .call("GET", &dev, Some(&tok(&second, "access_token")), None)
        .await;
    assert_eq!(s, 200);
    // another client cannot use it
    let (oid, osecret) = env.client(&["devices:read"]).await;
    let (s, v) = env
        .form(
            "/oauth/token",
            Some((&oid, &osecret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tok(&second, "refresh_token")),
            ],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    // a wider scope is refused
    let (s, v) = env
        .form(
            "/oauth/token",
            Some(client),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tok(&second, "refresh_token")),
                ("scope", "devices:read devices:control"),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
    // replaying the spent refresh token revokes the whole grant
    let (s, v) = refresh(tok(&first, "refresh_token")).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, _) = env
        .call("GET", &dev, Some(&tok(&second, "access_token")), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = refresh(tok(&second, "refresh_token")).await;
    assert_eq!(s, 400);

    // RFC 7009: revoking a refresh token ends the grant; an access token dies alone
    let g = env.tokens(&alice, client, "devices:read").await;
    let (s, _) = env
        .form(
            "/oauth/revoke",
            Some(client),
            &[("token", &tok(&g, "access_token"))],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call("GET", &dev, Some(&tok(&g, "access_token")), None)
        .await;
    assert_eq!(s, 401);
    let (s, next) = refresh(tok(&g, "refresh_token")).await;
    assert_eq!(s, 200, "{next}");
    // another client's revocation of our token does nothing (and answers the same)
    let (s, _) = env
        .form(
            "/oauth/revoke",
            Some((&oid, &osecret)),
            &[("token", &tok(&next, "refresh_token"))],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call("GET", &dev, Some(&tok(&next, "access_token")), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .form(
            "/oauth/revoke",
            Some(client),
            &[
                ("token", &tok(&next, "refresh_token")),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call("GET", &dev, Some(&tok(&next, "access_token")), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = env
        .form("/oauth/revoke", Some(client), &[("token", "ror_unknown")])
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .form("/oauth/revoke", Some((&id, "nope")), &[("token", "x")])
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));

    // every grant, refusal and revocation left an audit row
    let store = rampart_store::Store::open_sqlite(&env.srv.data().join("rampart.db"))
        .await
        .unwrap();
    for action in [
        "oauth.client_register",
        "oauth.grant",
        "oauth.token",
        "oauth.token_reuse",
        "oauth.revoke",
        "oauth.client_auth",
    ] {
        assert!(
            !store.list_audit(Some(action), 10).await.unwrap().is_empty(),
            "{action}"
        );
    }
    store.close().await;
}

/// The value of `name="csrf"` in a consent page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn consent_page_signs_in_and_approves_with_a_protected_form() {
    let env = Env::start().await;
    env.user("erin@example.com").await;
    let (id, secret) = env.client(&["devices:read", "devices:control"]).await;
    let (verifier, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", CB),
        ("scope", "devices:read devices:control"),
        ("state", "<st>"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = || async {
        let resp = env
            .raw
            .get(env.srv.url("/oauth/authorize"))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let cookie = cookie.split(';').next().unwrap().to_owned();
        // The hardening headers; the page works under the CSP: no script, no style.
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="));
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let html = resp.text().await.unwrap();
        for banned in ["<script", "style=", "<style", "<img", "<link", "<iframe"] {
            assert!(
                !html.contains(banned),
                "the consent page needs {banned}, which the CSP blocks"
            );
        }
        assert!(html.contains("Voice assistant"));
        assert!(html.contains("&lt;st&gt;") && !html.contains("<st>"));
        (cookie, csrf_of(&html))
    };
    let post = |cookie: Option<String>, fields: Vec<(&'static str, String)>| {
        let env = &env;
        async move {
            let mut form: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            form.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let mut rb = env
                .raw
                .post(env.srv.url("/oauth/authorize/consent"))
                .form(&form);
            if let Some(c) = cookie {
                rb = rb.header("cookie", c);
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let loc = resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            (status, loc, resp.text().await.unwrap())
        }
    };
    let login = |csrf: String, pw: &str| {
        vec![
            ("csrf", csrf),
            ("username", "erin@example.com".to_owned()),
            ("password", pw.to_owned()),
            ("approve", "devices:read".to_owned()),
            ("decision", "approve".to_owned()),
        ]
    };

    // without the cookie (a cross-site post) the form is refused
    let (_, csrf) = page().await;
    let (s, loc, _) = post(None, login(csrf.clone(), PW)).await;
    assert_eq!((s, loc), (403, None));
    // a wrong password shows the page again
    let (cookie, csrf) = page().await;
    let (s, loc, html) = post(Some(cookie), login(csrf, "wrong password here")).await;
    assert_eq!((s, loc), (401, None));
    assert!(html.contains("Wrong e-mail"));
    // the right one approves only the ticked scope, and goes back with code and state
    let (cookie, csrf) = page().await;
    let (s, loc, _) = post(Some(cookie), login(csrf, PW)).await;
    assert_eq!(s, 303);
    let loc = loc.unwrap();
    assert!(loc.starts_with(&format!("{CB}?")), "{loc}");
    let q = query(&loc);
    assert_eq!(q["state"], "<st>");
    let (s, v) = env
        .exchange((&id, &secret), &q["code"], &verifier, CB)
        .await;
    assert_eq!((s, v["scope"].as_str()), (200, Some("devices:read")), "{v}");
    // deny
    let (cookie, csrf) = page().await;
    let (s, loc, _) = post(
        Some(cookie),
        vec![("csrf", csrf), ("decision", "deny".to_owned())],
    )
    .await;
    assert_eq!(s, 303);
    assert_eq!(query(&loc.unwrap())["error"], "access_denied");

    // a bad request with a good client and redirect goes back with the error...
    let mut bad = params.to_vec();
    bad[6] = ("code_challenge_method", "plain");
    let resp = env
        .raw
        .get(env.srv.url("/oauth/authorize"))
        .query(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let q = query(resp.headers()["location"].to_str().unwrap());
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("invalid_request", "<st>")
    );
    // ...but an unregistered redirect URI gets an error page, never a redirect
    let mut bad = params.to_vec();
    bad[2] = ("redirect_uri", "https://evil.example/cb");
    let resp = env
        .raw
        .get(env.srv.url("/oauth/authorize"))
        .query(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("location").is_none());
}

// ---- OpenID Connect login against a provider run by the test ----

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Good,
    BadNonce,
    WrongAudience,
    BadSignature,
    Expired,
    /// The id token carries no e-mail claims; UserInfo has them (under `userinfo_sub`).
    EmailFromUserinfo,
}

struct Idp {
    issuer: String,
    mode: Mode,
    sub: String,
    email: String,
    email_verified: bool,
    /// The `sub` UserInfo answers with.
    userinfo_sub: String,
    /// code -> (nonce, challenge, redirect_uri)
    codes: HashMap<String, (String, String, String)>,
}

type IdpState = Arc<Mutex<Idp>>;

fn idp_key(good: bool) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[if good { 7u8 } else { 9u8 }; 32]).unwrap()
}

/// Start the provider on loopback (plain HTTP, which Rampart accepts for loopback issuers only).
async fn start_idp() -> IdpState {
    use axum::extract::{Form, Query, State};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let st: IdpState = Arc::new(Mutex::new(Idp {
        issuer: issuer.clone(),
        mode: Mode::Good,
        sub: "sub-1".into(),
        email: "oidc@example.com".into(),
        email_verified: true,
        userinfo_sub: "sub-1".into(),
        codes: HashMap::new(),
    }));
    async fn discovery(State(st): State<IdpState>) -> axum::Json<Value> {
        let i = st.lock().unwrap().issuer.clone();
        axum::Json(
            json!({"issuer": i, "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"), "jwks_uri": format!("{i}/jwks"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]}),
        )
    }
    async fn jwks() -> axum::Json<Value> {
        let p = idp_key(true).verifying_key().to_encoded_point(false);
        axum::Json(
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "alg": "ES256", "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())}]}),
        )
    }
    async fn authorize(
        State(st): State<IdpState>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        assert_eq!(q["client_id"], "rampart-test");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q["scope"].split(' ').any(|s| s == "openid"));
        let code = format!("c{}", nonce());
        st.lock().unwrap().codes.insert(
            code.clone(),
            (
                q["nonce"].clone(),
                q["code_challenge"].clone(),
                q["redirect_uri"].clone(),
            ),
        );
        let sep = if q["redirect_uri"].contains('?') {
            '&'
        } else {
            '?'
        };
        Redirect::to(&format!(
            "{}{sep}code={code}&state={}",
            q["redirect_uri"], q["state"]
        ))
        .into_response()
    }
    async fn token(
        State(st): State<IdpState>,
        headers: axum::http::HeaderMap,
        Form(f): Form<HashMap<String, String>>,
    ) -> axum::response::Response {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("rampart-test:s3cret")
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "invalid_client"})),
            )
                .into_response();
        }
        let st = st.lock().unwrap();
        let Some((n, challenge, redirect)) = st.codes.get(&f["code"]).cloned() else {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        };
        assert_eq!(f["grant_type"], "authorization_code");
        assert_eq!(f["redirect_uri"], redirect);
        assert_eq!(
            b64(&Sha256::digest(f["code_verifier"].as_bytes())),
            challenge
        );
        let now = now_ms() / 1000;
        let mut claims = json!({"iss": st.issuer, "sub": st.sub, "aud": "rampart-test",
            "exp": now + 300, "iat": now, "nonce": n, "email": st.email,
            "email_verified": st.email_verified});
        match st.mode {
            Mode::BadNonce => claims["nonce"] = json!("not-the-nonce"),
            Mode::WrongAudience => claims["aud"] = json!("someone-else"),
            Mode::Expired => {
                claims["exp"] = json!(now - 3600);
                claims["iat"] = json!(now - 7200);
            }
            Mode::EmailFromUserinfo => {
                let c = claims.as_object_mut().unwrap();
                c.remove("email");
                c.remove("email_verified");
            }
            Mode::Good | Mode::BadSignature => {}
        }
        let key = idp_key(st.mode != Mode::BadSignature);
        let h = b64(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"})
            .to_string()
            .as_bytes());
        let input = format!("{h}.{}", b64(claims.to_string().as_bytes()));
        let sig: p256::ecdsa::Signature =
            p256::ecdsa::signature::Signer::sign(&key, input.as_bytes());
        let id_token = format!("{input}.{}", b64(&sig.to_bytes()));
        axum::Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}))
            .into_response()
    }
    async fn userinfo(
        State(st): State<IdpState>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer at") {
            return axum::http::StatusCode::UNAUTHORIZED.into_response();
        }
        let st = st.lock().unwrap();
        axum::Json(json!({"sub": st.userinfo_sub, "email": st.email,
            "email_verified": st.email_verified}))
        .into_response()
    }
    let app = axum::Router::new()
        .route("/userinfo", get(userinfo))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(st.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    st
}

/// Rampart configured with the test provider as `test`.
async fn oidc_env() -> (Env, IdpState, tempfile::TempDir) {
    let idp = start_idp().await;
    let issuer = idp.lock().unwrap().issuer.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(
        &cfg,
        format!(
            "[oidc.providers.test]\nissuer = \"{issuer}\"\nclient_id = \"rampart-test\"\n\
             client_secret = \"s3cret\"\nlink_verified_email = true\n"
        ),
    )
    .unwrap();
    let env = Env::start_with(&[("RAMPART_CONFIG", cfg.to_str().unwrap())]).await;
    (env, idp, dir)
}

impl Env {
    /// Start a login: the provider's authorisation URL and the browser-binding cookie
    /// (`name=value`) the start set.
    async fn oidc_start(&self) -> (String, String) {
        let resp = self
            .raw
            .get(
                self.srv
                    .url(&format!("/v1/oidc/test/start?app_id={}", self.app)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{:?}", resp.text().await);
        let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        let (pair, attrs) = set.split_once(';').unwrap();
        assert!(pair.starts_with("__Host-rampart_oidc="), "{set}");
        assert_eq!(pair.len(), "__Host-rampart_oidc=".len() + 64, "{set}");
        for a in [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=600",
        ] {
            assert!(attrs.split(';').any(|x| x.trim() == a), "{a} in {set}");
        }
        let at_idp = resp.headers()["location"].to_str().unwrap().to_owned();
        (at_idp, pair.to_owned())
    }

    /// Run a login through the provider; returns the callback's status and body, the callback
    /// URL (to replay it) and the browser-binding cookie sent with it.
    async fn oidc_login(&self) -> (u16, Value, String, String) {
        let (at_idp, cookie) = self.oidc_start().await;
        let q = query(&at_idp);
        assert_eq!(q["redirect_uri"], self.srv.url("/v1/oidc/test/callback"));
        assert!(!q["nonce"].is_empty() && !q["state"].is_empty());
        let back = self.at_idp(&at_idp).await;
        let (s, v) = self.get_with_cookie(&back, Some(&cookie)).await;
        (s, v, back, cookie)
    }

    /// The user at the provider: where it sends them back to (our callback with code and state).
    async fn at_idp(&self, authorize_url: &str) -> String {
        let resp = self.raw.get(authorize_url).send().await.unwrap();
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    /// The details of the failed logins in the audit log (read from the server's SQLite store).
    async fn failed_login_details(&self) -> Vec<String> {
        let store = rampart_store::Store::open_sqlite(&self.srv.data().join("rampart.db"))
            .await
            .unwrap();
        let details = store
            .list_audit(Some("user.login"), 50)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.outcome == "failed")
            .filter_map(|r| r.detail)
            .collect();
        store.close().await;
        details
    }

    async fn get_url(&self, url: &str) -> (u16, Value) {
        self.get_with_cookie(url, None).await
    }

    async fn get_with_cookie(&self, url: &str, cookie: Option<&str>) -> (u16, Value) {
        let mut rb = self.raw.get(url);
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        let resp = rb.send().await.unwrap();
        let s = resp.status().as_u16();
        if s == 200 {
            let spent = resp.headers()["set-cookie"].to_str().unwrap();
            assert!(
                spent.starts_with("__Host-rampart_oidc=;") && spent.contains("Max-Age=0"),
                "a finished login clears its cookie: {spent}"
            );
        }
        (s, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn oidc_login_creates_links_and_signs_in() {
    let (env, idp, _dir) = oidc_env().await;
    // first login: a new user with the verified e-mail
    let (s, v, back, cookie) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    assert!(v["expires_in"].as_i64().unwrap() > 0);
    let at = tok(&v, "access_token");
    assert!(at.starts_with("rat_"));
    let (s, me) = env.call("GET", "/v1/users/me", Some(&at), None).await;
    assert_eq!(
        (s, me["email"].as_str()),
        (200, Some("oidc@example.com")),
        "{me}"
    );
    // the refresh token works like a password login's
    let (s, r) = env
        .call(
            "POST",
            "/v1/token/refresh",
            None,
            Some(json!({"refresh_token": tok(&v, "refresh_token")})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    // the state is single use
    let (s, v) = env.get_with_cookie(&back, Some(&cookie)).await;
    assert_error(s, &v, 401, "OIDC_LOGIN_FAILED");
    // the same subject again: the same user
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    let (_, me2) = env
        .call("GET", "/v1/users/me", Some(&tok(&v, "access_token")), None)
        .await;
    assert_eq!(me2["user_id"], me["user_id"]);

    // a new subject with the verified e-mail of a password user: linked to that user
    let pw_token = env.user("pat@example.com").await;
    let (_, pat) = env.call("GET", "/v1/users/me", Some(&pw_token), None).await;
    {
        let mut i = idp.lock().unwrap();
        i.sub = "sub-2".into();
        i.email = "pat@example.com".into();
    }
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    let (_, me3) = env
        .call("GET", "/v1/users/me", Some(&tok(&v, "access_token")), None)
        .await;
    assert_eq!(me3["user_id"], pat["user_id"]);
    // an address signed up but never activated (perhaps by a squatter) is not linked either
    let (s, _) = env
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": "squat@example.com", "password": PW})),
        )
        .await;
    assert_eq!(s, 201);
    {
        let mut i = idp.lock().unwrap();
        i.sub = "sub-squat".into();
        i.email = "squat@example.com".into();
    }
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    let (_, me5) = env
        .call("GET", "/v1/users/me", Some(&tok(&v, "access_token")), None)
        .await;
    assert_eq!(me5["email"], Value::Null, "{me5}");
    let (s, _) = env
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"username": "squat@example.com", "password": PW})),
        )
        .await;
    assert_eq!(s, 403, "the squatted account stays inactive");
    {
        let mut i = idp.lock().unwrap();
        i.email = "pat@example.com".into();
    }
    // an unverified address is never linked: a new user without an e-mail
    {
        let mut i = idp.lock().unwrap();
        i.sub = "sub-3".into();
        i.email_verified = false;
    }
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    let (_, me4) = env
        .call("GET", "/v1/users/me", Some(&tok(&v, "access_token")), None)
        .await;
    assert_ne!(me4["user_id"], pat["user_id"]);
    assert_eq!(me4["email"], Value::Null);

    // unknown provider, unknown app
    let (s, _) = env
        .get_url(
            &env.srv
                .url(&format!("/v1/oidc/nope/start?app_id={}", env.app)),
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = env
        .get_url(&env.srv.url("/v1/oidc/test/start?app_id=app_nope"))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn oidc_login_refuses_bad_id_tokens() {
    let (env, idp, _dir) = oidc_env().await;
    for mode in [
        Mode::BadNonce,
        Mode::WrongAudience,
        Mode::BadSignature,
        Mode::Expired,
    ] {
        idp.lock().unwrap().mode = mode;
        let (s, v, _, _) = env.oidc_login().await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("OIDC_LOGIN_FAILED")),
            "{mode:?}: {v}"
        );
    }
    // a forged state is refused before anything is exchanged
    let (_, cookie) = env.oidc_start().await;
    let (s, v) = env
        .get_with_cookie(
            &env.srv.url("/v1/oidc/test/callback?code=x&state=forged"),
            Some(&cookie),
        )
        .await;
    assert_error(s, &v, 401, "OIDC_LOGIN_FAILED");
    idp.lock().unwrap().mode = Mode::Good;
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    // starting logins is limited per client address (each start stores a state)
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let resp = env
            .raw
            .get(
                env.srv
                    .url(&format!("/v1/oidc/test/start?app_id={}", env.app)),
            )
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // each refusal was audited with its reason (the client only sees the generic code)
    let details = env.failed_login_details().await;
    for why in [
        "wrong nonce",
        "wrong audience",
        "bad signature",
        "expired",
        "unknown or expired state",
    ] {
        assert!(
            details.iter().any(|d| d.contains(why)),
            "{why}: {details:?}"
        );
    }
}

/// Login CSRF: a callback URL carried to another browser (the attacker's own login, planted in
/// the victim's browser) is refused, because the start bound the state to a cookie.
#[tokio::test]
async fn oidc_userinfo_about_another_subject_is_refused() {
    let (env, idp, _dir) = oidc_env().await;
    {
        let mut st = idp.lock().unwrap();
        st.mode = Mode::EmailFromUserinfo;
        st.sub = "sub-ui".into();
        st.email = "ui@example.com".into();
        st.userinfo_sub = "someone-else".into();
    }
    let (s, v, _, _) = env.oidc_login().await;
    assert_error(s, &v, 401, "OIDC_LOGIN_FAILED");
    assert!(
        env.failed_login_details()
            .await
            .iter()
            .any(|d| d.contains("userinfo")),
        "the refusal is audited"
    );
    // the same subject: its e-mail is taken from UserInfo
    idp.lock().unwrap().userinfo_sub = "sub-ui".into();
    let (s, v, _, _) = env.oidc_login().await;
    assert_eq!(s, 200, "{v}");
    let (_, me) = env
        .call("GET", "/v1/users/me", Some(&tok(&v, "access_token")), None)
        .await;
    assert_eq!(me["email"], "ui@example.com", "{me}");
}

#[tokio::test]
async fn oidc_callback_needs_the_browser_that_started_the_login() {
    let (env, _idp, _dir) = oidc_env().await;
    let (at_idp, cookie_a) = env.oidc_start().await;
    let back = env.at_idp(&at_idp).await;
    // no cookie: refused before the state is looked at (so it is not spent)
    let (s, v) = env.get_url(&back).await;
    assert_error(s, &v, 400, "OIDC_STATE_MISMATCH");
    assert!(v["error"]["message"].as_str().unwrap().contains("browser"));
    // the right cookie: signed in
    let (s, v) = env.get_with_cookie(&back, Some(&cookie_a)).await;
    assert_eq!(s, 200, "{v}");
    assert!(tok(&v, "access_token").starts_with("rat_"));

    // another browser's cookie (a login it started itself): refused, and the state is spent
    let (at_idp, cookie_a) = env.oidc_start().await;
    let back = env.at_idp(&at_idp).await;
    let (_, cookie_b) = env.oidc_start().await;
    assert_ne!(cookie_a, cookie_b);
    let (s, v) = env.get_with_cookie(&back, Some(&cookie_b)).await;
    assert_error(s, &v, 400, "OIDC_STATE_MISMATCH");
    let (s, v) = env.get_with_cookie(&back, Some(&cookie_a)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("OIDC_LOGIN_FAILED")),
        "a refused state stays spent: {v}"
    );
    // a cookie of the right name with a made-up value
    let (at_idp, _) = env.oidc_start().await;
    let back = env.at_idp(&at_idp).await;
    let forged = format!("__Host-rampart_oidc={}", "0".repeat(64));
    let (s, v) = env.get_with_cookie(&back, Some(&forged)).await;
    assert_error(s, &v, 400, "OIDC_STATE_MISMATCH");

    let details = env.failed_login_details().await;
    for why in [
        "no browser-binding cookie",
        "browser-binding cookie does not match the state",
    ] {
        assert!(
            details.iter().any(|d| d.contains(why)),
            "{why}: {details:?}"
        );
    }
}

impl Env {
    /// A developer account made by the operator; returns its access token.
    async fn developer(&self, email: &str) -> String {
        let (s, v) = self
            .srv
            .admin(
                "POST",
                "/v1/admin/developers",
                Some(json!({"email": email, "password": PW})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .call(
                "POST",
                "/v1/developers/login",
                None,
                Some(json!({"email": email, "password": PW})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        tok(&v, "access_token")
    }

    /// Approve `scope` for `client` with redirect URI `cb`; returns (code, verifier).
    async fn code_at(&self, token: &str, client: &str, cb: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let (s, v) = self
            .approve(
                token,
                json!({"response_type": "code", "client_id": client, "redirect_uri": cb,
                       "scope": scope, "code_challenge": challenge,
                       "code_challenge_method": "S256"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (tok(&v, "code"), verifier)
    }
}

#[tokio::test]
async fn public_clients_use_pkce_alone_and_rotate_refresh_tokens() {
    let env = Env::start().await;
    let alice = env.user("pub@example.com").await;
    let did = env.owned_device(&alice).await;
    let dev = env.developer("maker@example.com").await;
    const NATIVE: &str = "http://127.0.0.1:7/cb";
    let (s, c) = env
        .call(
            "POST",
            "/v1/oauth/clients",
            Some(&dev),
            Some(json!({"name": "Phone app", "redirect_uris": [NATIVE],
                        "scopes": ["devices:read"], "public": true})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["public"], true);
    assert_eq!(c["token_endpoint_auth_method"], "none");
    assert!(c.get("client_secret").is_none(), "no secret is issued: {c}");
    let id = tok(&c, "client_id");
    let by_id = |extra: &[(&'static str, String)]| {
        let mut f: Vec<(&'static str, String)> = vec![("client_id", id.clone())];
        f.extend(extra.iter().cloned());
        f
    };
    let post = |f: Vec<(&'static str, String)>, path: &'static str| {
        let env = &env;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            env.form(path, None, &pairs).await
        }
    };

    // PKCE stays mandatory
    let (s, v) = env
        .approve(
            &alice,
            json!({"response_type": "code", "client_id": id, "redirect_uri": NATIVE,
                   "scope": "devices:read"}),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    // a wrong verifier is refused (and spends the code)
    let (code, verifier) = env.code_at(&alice, &id, NATIVE, "devices:read").await;
    let wrong = format!("{}y", &verifier[..verifier.len() - 1]);
    let (s, v) = post(
        by_id(&[
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("redirect_uri", NATIVE.into()),
            ("code_verifier", wrong),
        ]),
        "/oauth/token",
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // a public client that sends a secret is refused
    let (code, verifier) = env.code_at(&alice, &id, NATIVE, "devices:read").await;
    let exchange = by_id(&[
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("redirect_uri", NATIVE.into()),
        ("code_verifier", verifier.clone()),
    ]);
    let mut with_secret = exchange.clone();
    with_secret.push(("client_secret", "rcs_guess".into()));
    let (s, v) = post(with_secret, "/oauth/token").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    // the client id and the verifier are enough
    let (s, first) = post(exchange.clone(), "/oauth/token").await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["scope"], "devices:read");
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}"),
            Some(&tok(&first, "access_token")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    // unknown client id, no client id at all
    let (s, v) = env
        .form(
            "/oauth/token",
            None,
            &[
                ("client_id", "rcl_nope"),
                ("grant_type", "refresh_token"),
                ("refresh_token", "ror_x"),
            ],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    let (s, _) = env
        .form(
            "/oauth/token",
            None,
            &[("grant_type", "refresh_token"), ("refresh_token", "ror_x")],
        )
        .await;
    assert_eq!(s, 401);

    // refresh tokens rotate; a spent one presented again revokes the grant
    let refresh = |rt: String| {
        post(
            by_id(&[
                ("grant_type", "refresh_token".into()),
                ("refresh_token", rt),
            ]),
            "/oauth/token",
        )
    };
    let (s, second) = refresh(tok(&first, "refresh_token")).await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (s, v) = refresh(tok(&first, "refresh_token")).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, _) = env
        .call(
            "GET",
            "/v1/bindings",
            Some(&tok(&second, "access_token")),
            None,
        )
        .await;
    assert_eq!(s, 401, "reuse revoked the grant");
    let (s, v) = refresh(tok(&second, "refresh_token")).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));

    // revocation by the client id alone
    let (code, verifier) = env.code_at(&alice, &id, NATIVE, "devices:read").await;
    let (s, t) = post(
        by_id(&[
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", NATIVE.into()),
            ("code_verifier", verifier),
        ]),
        "/oauth/token",
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let (s, _) = post(
        by_id(&[("token", tok(&t, "refresh_token"))]),
        "/oauth/revoke",
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .call("GET", "/v1/bindings", Some(&tok(&t, "access_token")), None)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn owners_list_update_rotate_and_delete_their_clients() {
    let env = Env::start().await;
    let alice = env.user("own@example.com").await;
    let did = env.owned_device(&alice).await;
    let dev = env.developer("owner@example.com").await;
    let other = env.developer("stranger@example.com").await;
    // the developer's client, and the operator's
    let (s, mine) = env
        .call(
            "POST",
            "/v1/oauth/clients",
            Some(&dev),
            Some(json!({"name": "Dev assistant", "redirect_uris": [CB],
                        "scopes": ["devices:read", "devices:control"]})),
        )
        .await;
    assert_eq!(s, 201, "{mine}");
    assert_eq!(mine["token_endpoint_auth_method"], "client_secret_basic");
    let mine_id = tok(&mine, "client_id");
    let mine_secret = tok(&mine, "client_secret");
    let (ops_id, _) = env.client(&["devices:read"]).await;
    // an end user's token is no owner
    let (s, _) = env
        .call("GET", "/v1/oauth/clients", Some(&alice), None)
        .await;
    assert_eq!(s, 401);

    // lists: a developer sees their own, the operator every client
    let (s, v) = env.call("GET", "/v1/oauth/clients", Some(&dev), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"]["total"], 1);
    let row = &v["data"][0];
    assert_eq!(row["client_id"], mine_id.as_str());
    assert_eq!(row["redirect_uris"], json!([CB]));
    assert_eq!(row["scopes"], json!(["devices:read", "devices:control"]));
    assert!(
        row["owner"].as_str().unwrap().starts_with("developer:dev_"),
        "{row}"
    );
    assert_eq!(row["updated_at"], Value::Null);
    assert!(row.get("client_secret").is_none() && !v.to_string().contains("rcs_"));
    let (_, v) = env
        .call("GET", "/v1/oauth/clients", Some(&other), None)
        .await;
    assert_eq!(v["meta"]["total"], 0);
    let (_, v) = env
        .srv
        .admin("GET", "/v1/oauth/clients?limit=10", None)
        .await;
    assert_eq!(v["meta"]["total"], 2, "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["client_id"] == ops_id.as_str()));
    // another developer's client answers like an unknown one, on every call
    let path = format!("/v1/oauth/clients/{mine_id}");
    for (m, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"name": "mine now"}))),
        ("DELETE", None),
    ] {
        let (s, v) = env.call(m, &path, Some(&other), body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{m}: {v}"
        );
    }
    let (s, _) = env
        .call("POST", &format!("{path}/secret/rotate"), Some(&other), None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/oauth/clients/{ops_id}"),
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // a live grant of the developer's client
    let t = env
        .tokens(&alice, (&mine_id, &mine_secret), "devices:read")
        .await;
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}"),
            Some(&tok(&t, "access_token")),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // update: redirect URIs are checked like at registration
    for bad in [
        json!({"redirect_uris": ["http://example.com/cb"]}),
        json!({"redirect_uris": ["https://a.example/cb#x"]}),
        json!({"redirect_uris": []}),
        json!({"redirect_uris": [CB, CB]}),
        json!({"name": ""}),
        json!({}),
    ] {
        let (s, v) = env
            .call("PATCH", &path, Some(&dev), Some(bad.clone()))
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad}: {v}"
        );
    }
    let (s, v) = env
        .call(
            "PATCH",
            &path,
            Some(&dev),
            Some(json!({"scopes": ["devices:read"]})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_JSON");
    const NEW_CB: &str = "https://client.example/v2/cb";
    let (s, v) = env
        .call(
            "PATCH",
            &path,
            Some(&dev),
            Some(
                json!({"name": "Dev assistant 2", "redirect_uris": [NEW_CB, "http://[::1]:8/cb"]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "Dev assistant 2");
    assert_eq!(v["redirect_uris"], json!([NEW_CB, "http://[::1]:8/cb"]));
    assert!(v["updated_at"].as_i64().unwrap() > 0);
    let (_, got) = env.call("GET", &path, Some(&dev), None).await;
    assert_eq!(got, v);
    // the old URI is no longer accepted, the new one is (exact match)
    let (_, challenge) = pkce();
    let (s, v) = env
        .approve(
            &alice,
            json!({"response_type": "code", "client_id": mine_id, "redirect_uri": CB,
                   "scope": "devices:read", "code_challenge": challenge, "code_challenge_method": "S256"}),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_CLIENT");
    let (code, verifier) = env.code_at(&alice, &mine_id, NEW_CB, "devices:read").await;
    // a code issued for a URI that is then removed dies with it
    let (loop_code, loop_verifier) = env
        .code_at(&alice, &mine_id, "http://[::1]:8/cb", "devices:read")
        .await;
    let (s, v) = env
        .call(
            "PATCH",
            &path,
            Some(&dev),
            Some(json!({"redirect_uris": [NEW_CB]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env
        .exchange(
            (&mine_id, &mine_secret),
            &loop_code,
            &loop_verifier,
            "http://[::1]:8/cb",
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str(), v["error_description"].as_str()),
        (
            400,
            Some("invalid_grant"),
            Some("redirect_uri is no longer registered for this client")
        ),
        "{v}"
    );

    // secret rotation: shown once, the old secret stops at once
    let (s, r) = env
        .call("POST", &format!("{path}/secret/rotate"), Some(&dev), None)
        .await;
    assert_eq!(s, 200, "{r}");
    let new_secret = tok(&r, "client_secret");
    assert!(new_secret.starts_with("rcs_") && new_secret != mine_secret);
    let (s, v) = env
        .exchange((&mine_id, &mine_secret), &code, &verifier, NEW_CB)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    let (s, v) = env
        .exchange((&mine_id, &new_secret), &code, &verifier, NEW_CB)
        .await;
    assert_eq!(s, 200, "{v}");
    // a public client has no secret to rotate
    let (s, p) = env
        .call(
            "POST",
            "/v1/oauth/clients",
            Some(&dev),
            Some(json!({"name": "App", "redirect_uris": [CB], "scopes": ["devices:read"], "public": true})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/oauth/clients/{}/secret/rotate", tok(&p, "client_id")),
            Some(&dev),
            None,
        )
        .await;
    assert_error(s, &v, 409, "CONFLICT");

    // deletion revokes every grant and token of the client
    let (_, grants) = env
        .call("GET", "/v1/oauth/grants", Some(&alice), None)
        .await;
    assert_eq!(grants["meta"]["total"], 2, "{grants}");
    let (s, v) = env.call("DELETE", &path, Some(&dev), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["grants_revoked"].as_i64()),
        (Some("deleted"), Some(2))
    );
    let (s, _) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}"),
            Some(&tok(&t, "access_token")),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = env.call("GET", &path, Some(&dev), None).await;
    assert_eq!(s, 404);
    let (_, grants) = env
        .call("GET", "/v1/oauth/grants", Some(&alice), None)
        .await;
    assert_eq!(grants["meta"]["total"], 0, "{grants}");
    let (s, v) = env
        .form(
            "/oauth/token",
            Some((&mine_id, &new_secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tok(&t, "refresh_token")),
            ],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    // the operator manages any client
    let (s, v) = env
        .srv
        .admin(
            "PATCH",
            &format!("/v1/oauth/clients/{ops_id}"),
            Some(json!({"name": "Ops"})),
        )
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Ops")));
    let (s, _) = env
        .srv
        .admin(
            "DELETE",
            &format!("/v1/oauth/clients/{}", tok(&p, "client_id")),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // every change is audited
    let store = rampart_store::Store::open_sqlite(&env.srv.data().join("rampart.db"))
        .await
        .unwrap();
    for action in [
        "oauth.client_register",
        "oauth.client_update",
        "oauth.client_secret_rotate",
        "oauth.client_delete",
    ] {
        let rows = store.list_audit(Some(action), 10).await.unwrap();
        assert!(!rows.is_empty(), "{action}");
        assert!(
            rows.iter()
                .all(|r| r.target.as_deref().unwrap_or("").starts_with("client:")),
            "{action}"
        );
    }
    let del = store
        .list_audit(Some("oauth.client_delete"), 10)
        .await
        .unwrap();
    assert!(del.iter().any(|r| r.actor_kind == "developer"), "{del:?}");
    store.close().await;
}

/// A third party's access (its grant, access and refresh tokens, and a code not exchanged yet)
/// ends when the user changes the password, resets it, or logs out everywhere:
/// `GET /v1/oauth/grants` lists none afterwards.
#[tokio::test]
async fn third_party_access_ends_with_the_password_and_with_logout_all() {
    let env = Env::start().await;
    let (client, secret) = env.client(&["devices:read"]).await;
    let client = (client.as_str(), secret.as_str());
    for (email, how) in [
        ("change@example.com", "password change"),
        ("logoutall@example.com", "logout-all"),
        ("reset@example.com", "password reset"),
    ] {
        let user = env.user(email).await;
        env.owned_device(&user).await;
        let granted = env.tokens(&user, client, "devices:read").await;
        let (pending, verifier) = env.code_for(&user, client.0, "devices:read").await;
        let (s, v) = env.call("GET", "/v1/oauth/grants", Some(&user), None).await;
        assert_eq!((s, v["data"].as_array().unwrap().len()), (200, 1), "{v}");
        let (s, _) = env
            .call(
                "GET",
                "/v1/bindings",
                Some(&tok(&granted, "access_token")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{how}: the grant works before");

        let user = match how {
            "password change" => {
                let (s, v) = env
                    .call(
                        "POST",
                        "/v1/users/me/password",
                        Some(&user),
                        Some(json!({"old_password": PW, "new_password": "amber gravel quiet harbor"})),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                user
            }
            "logout-all" => {
                let (s, v) = env.call("POST", "/v1/logout/all", Some(&user), None).await;
                assert_eq!(s, 200, "{v}");
                let (s, v) = env
                    .call(
                        "POST",
                        "/v1/login",
                        None,
                        Some(json!({"username": email, "password": PW})),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                tok(&v, "access_token")
            }
            _ => {
                let (s, v) = env
                    .call(
                        "POST",
                        "/v1/users/password/reset",
                        None,
                        Some(json!({"email": email})),
                    )
                    .await;
                assert_eq!(s, 202, "{v}");
                let code = env.code_of(email, "password_reset").await;
                let (s, v) = env
                    .call(
                        "POST",
                        "/v1/users/password/reset/confirm",
                        None,
                        Some(json!({"email": email, "code": code, "password": "amber gravel quiet harbor"})),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                let (s, v) = env
                    .call(
                        "POST",
                        "/v1/login",
                        None,
                        Some(json!({"username": email, "password": "amber gravel quiet harbor"})),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                tok(&v, "access_token")
            }
        };
        let (s, v) = env.call("GET", "/v1/oauth/grants", Some(&user), None).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["data"].as_array().unwrap().is_empty(), "{how}: {v}");
        let (s, _) = env
            .call(
                "GET",
                "/v1/bindings",
                Some(&tok(&granted, "access_token")),
                None,
            )
            .await;
        assert_eq!(s, 401, "{how}: the access token ended");
        let (s, v) = env
            .form(
                "/oauth/token",
                Some(client),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &tok(&granted, "refresh_token")),
                ],
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{how}: {v}"
        );
        let (s, v) = env.exchange(client, &pending, &verifier, CB).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{how}: {v}"
        );
    }
}
/// The node provider (`crates/cli/tests/oidc-provider`), killed on drop.
struct NodeIdp {
    child: std::process::Child,
    issuer: String,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for NodeIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeIdp {
    /// `None` (with the reason printed) when its `node_modules` was not installed.
    fn start() -> Option<NodeIdp> {
        use std::io::BufRead;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
        if !dir.join("node_modules/oidc-provider").exists() {
            eprintln!(
                "skipping the oidc-provider test: run `npm ci` in {} first",
                dir.display()
            );
            return None;
        }
        let mut child = std::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).expect("the provider's issuer line");
        Some(NodeIdp {
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            child,
            stdout,
        })
    }

    /// Register the client's redirect URI and wait until the provider serves.
    fn configure(&mut self, redirect_uri: &str) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{redirect_uri}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
}

#[tokio::test]
async fn oidc_login_with_a_conforming_provider_takes_the_email_from_userinfo() {
    let Some(mut idp) = NodeIdp::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(
        &cfg,
        format!(
            "[oidc.providers.test]\nissuer = \"{}\"\nclient_id = \"rampart-test\"\n\
             client_secret = \"s3cret\"\nscopes = [\"openid\", \"email\"]\n",
            idp.issuer
        ),
    )
    .unwrap();
    let env = Env::start_with(&[("RAMPART_CONFIG", cfg.to_str().unwrap())]).await;
    let callback = env.srv.url("/v1/oidc/test/callback");
    idp.configure(&callback);

    let (mut url, cookie) = env.oidc_start().await;
    // The browser at the provider: follow its redirects, keeping its cookies, until it sends
    // the user back to our callback.
    let mut jar: HashMap<String, String> = HashMap::new();
    for _ in 0..20 {
        if url.starts_with(&callback) {
            break;
        }
        let mut rb = env.raw.get(&url);
        if !jar.is_empty() {
            let c: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rb = rb.header("cookie", c.join("; "));
        }
        let resp = rb.send().await.unwrap();
        for sc in resp.headers().get_all("set-cookie") {
            let pair = sc.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                jar.insert(k.trim().to_owned(), v.to_owned());
            }
        }
        let status = resp.status();
        let Some(loc) = resp.headers().get("location") else {
            panic!(
                "the provider answered {status}: {}",
                resp.text().await.unwrap()
            );
        };
        let loc = loc.to_str().unwrap().to_owned();
        url = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", idp.issuer)
        };
    }
    assert!(url.starts_with(&callback), "never sent back: {url}");
    let (s, v) = env.get_with_cookie(&url, Some(&cookie)).await;
    assert_eq!(s, 200, "{v}");
    let at = tok(&v, "access_token");
    let (s, me) = env.call("GET", "/v1/users/me", Some(&at), None).await;
    // The provider's ID token carries no e-mail in the code flow; it came from UserInfo.
    assert_eq!(
        (s, me["email"].as_str()),
        (200, Some("node-oidc@example.com")),
        "{me}"
    );
}
