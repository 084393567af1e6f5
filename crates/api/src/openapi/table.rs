//! The hand-written descriptions of the operations whose groups are not derived from their
//! handlers yet: one table, [`operations`], with each operation's summary, parameters, body,
//! answers, accepted credentials and error codes, and the schemas they name. A route uses its
//! entry by being added with `ApiRouter::described`; an entry no route uses is not published.
//!
//! Shrinks as groups move to `#[utoipa::path]`; it must never describe a derived operation.

use super::errors;
use crate::error::ErrorCode;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use ErrorCode as E;

/// Who may call an operation (the alternatives of its `security`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The operator's bootstrap admin token.
    Admin,
    /// An end user's `rat_` access token.
    User,
    /// A developer's `rdt_` access token.
    Developer,
    /// A third-party `roa_` token with `devices:read`.
    OAuthRead,
    /// An end user's access token in `?access_token=` (live push only).
    UserQuery,
    /// OAuth2 client authentication: HTTP Basic (or `client_id`/`client_secret` form fields).
    Client,
    /// A request signed with an enterprise access key (`Authorization: RAMPART-HMAC-SHA256 ...`).
    AccessKey,
}

impl Auth {
    fn requirement(self) -> Value {
        match self {
            Auth::Admin => json!({"admin": []}),
            Auth::User => json!({"user": []}),
            Auth::Developer => json!({"developer": []}),
            Auth::OAuthRead => json!({"oauth": ["devices:read"]}),
            Auth::UserQuery => json!({"user_query": []}),
            Auth::Client => json!({"client_basic": []}),
            Auth::AccessKey => json!({"access_key": []}),
        }
    }
}

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    auth: Vec<Auth>,
    params: Vec<Value>,
    body: Option<Value>,
    answers: BTreeMap<u16, Value>,
    errors: BTreeSet<ErrorCode>,
    /// RFC 6749 errors (`/oauth/token`, `/oauth/revoke`): status -> codes.
    oauth_errors: BTreeMap<u16, BTreeSet<&'static str>>,
    /// Errors answered as an HTML page (the browser-facing `/oauth/authorize*`).
    html_errors: BTreeMap<u16, &'static str>,
}

fn op(method: &'static str, path: &'static str, tag: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        description: None,
        auth: Vec::new(),
        params: Vec::new(),
        body: None,
        answers: BTreeMap::new(),
        errors: BTreeSet::new(),
        oauth_errors: BTreeMap::new(),
        html_errors: BTreeMap::new(),
    }
}

impl Op {
    fn describe(mut self, d: &'static str) -> Op {
        self.description = Some(d);
        self
    }
    /// The accepted credentials; a missing or bad token answers 401 `UNAUTHORIZED`. A signed
    /// request ([`Auth::AccessKey`]) is refused with 401 and the code of its refusal, its body
    /// read first (at most 1 MiB: 413), and its key looked up in the store.
    fn auth(mut self, a: &[Auth]) -> Op {
        self.auth = a.to_vec();
        let mut o = self;
        if a.iter().any(|x| *x != Auth::AccessKey) {
            o = o.err(&[E::Unauthorized]);
        }
        if a.contains(&Auth::AccessKey) {
            o = o.err(SIGNED_REFUSALS).err(&[E::PayloadTooLarge]).store();
        }
        o
    }
    fn query(mut self, name: &str, schema: Value, description: &str) -> Op {
        self.params
            .push(json!({"name": name, "in": "query", "required": false,
            "description": description, "schema": schema}));
        self.err(&[E::InvalidRequest])
    }
    fn required_query(mut self, name: &str, schema: Value, description: &str) -> Op {
        self.params
            .push(json!({"name": name, "in": "query", "required": true,
            "description": description, "schema": schema}));
        self.err(&[E::InvalidRequest])
    }
    /// `page` and `limit`, answered as `{"data", "meta": {"page", "limit", "total"}}`.
    fn paged(self) -> Op {
        self.query(
            "page",
            json!({"type": "integer", "minimum": 1, "maximum": crate::v1::MAX_PAGE, "default": 1}),
            "page, from 1",
        )
        .query(
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
            "items per page",
        )
    }
    /// The `X-Rampart-App-Id` header naming the client app.
    fn app_header(mut self) -> Op {
        self.params.push(
            json!({"name": "X-Rampart-App-Id", "in": "header", "required": true,
            "description": "the client app the user signs up or logs in through",
            "schema": {"type": "string"}}),
        );
        self
    }
    /// A strict JSON body (`Body<T>`): its rejections answer 400, 413 and 415.
    fn json_body(mut self, schema: Value) -> Op {
        self.body = Some(json!({"required": true,
            "content": {"application/json": {"schema": schema}}}));
        self.err(&[E::InvalidJson])
            .err(&[E::PayloadTooLarge])
            .err(&[E::UnsupportedMediaType])
    }
    fn form_body(mut self, schema: Value) -> Op {
        self.body = Some(json!({"required": true,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}}}));
        self
    }
    /// A JSON answer.
    fn ok(self, status: u16, description: &str, schema: Value) -> Op {
        self.answer(
            status,
            json!({"description": description,
                "content": {"application/json": {"schema": schema}}}),
        )
    }
    fn answer(mut self, status: u16, response: Value) -> Op {
        self.answers.insert(status, response);
        self
    }
    fn redirect(self, status: u16, description: &str) -> Op {
        self.answer(
            status,
            json!({"description": description,
                "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}}),
        )
    }
    fn html(self, status: u16, description: &str) -> Op {
        self.answer(
            status,
            json!({"description": description,
                "content": {"text/html": {"schema": {"type": "string"}}}}),
        )
    }
    fn err(mut self, codes: &[ErrorCode]) -> Op {
        self.errors.extend(codes);
        self
    }
    fn oauth_err(mut self, status: u16, codes: &[&'static str]) -> Op {
        self.oauth_errors.entry(status).or_default().extend(codes);
        self
    }
    fn html_err(mut self, status: u16, description: &'static str) -> Op {
        self.html_errors.insert(status, description);
        self
    }
    /// A malformed or unknown id in the path answers 404 like an unknown one.
    fn not_found(self) -> Op {
        self.err(&[E::NotFound])
    }
    /// The store may fail: 500 `INTERNAL`.
    fn store(self) -> Op {
        self.err(&[E::Internal])
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("tags".into(), json!([self.tag]));
        o.insert("summary".into(), json!(self.summary));
        if let Some(d) = self.description {
            o.insert("description".into(), json!(d));
        }
        o.insert(
            "operationId".into(),
            json!(operation_id(self.method, self.path)),
        );
        let mut params: Vec<Value> = path_params(self.path)
            .into_iter()
            .map(|p| {
                json!({"name": p, "in": "path", "required": true,
                    "description": path_param_meaning(p), "schema": {"type": "string"}})
            })
            .collect();
        params.extend(self.params.iter().cloned());
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(b) = &self.body {
            o.insert("requestBody".into(), b.clone());
        }
        let mut responses = Map::new();
        for (status, r) in &self.answers {
            responses.insert(status.to_string(), r.clone());
        }
        if self.auth.contains(&Auth::AccessKey) {
            for (status, r) in responses.iter_mut() {
                if status.starts_with('2') {
                    r["headers"] = errors::rate_headers(false);
                }
            }
        }
        let codes: Vec<ErrorCode> = self.errors.iter().copied().collect();
        for (status, codes) in errors::by_status(&codes) {
            responses.insert(status.to_string(), errors::response(&codes));
        }
        for (status, codes) in &self.oauth_errors {
            responses.insert(status.to_string(), oauth_error_response(codes));
        }
        for (status, d) in &self.html_errors {
            responses.insert(
                status.to_string(),
                json!({"description": d, "content": {"text/html": {"schema": {"type": "string"}}}}),
            );
        }
        o.insert("responses".into(), Value::Object(responses));
        if !self.auth.is_empty() {
            let reqs: Vec<Value> = self.auth.iter().map(|a| a.requirement()).collect();
            o.insert("security".into(), Value::Array(reqs));
        }
        Value::Object(o)
    }
}

fn oauth_error_response(codes: &BTreeSet<&str>) -> Value {
    let list: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    json!({
        "description": format!("RFC 6749 error: {}", list.join(", ")),
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["error", "error_description"],
            "properties": {
                "error": {"type": "string", "enum": codes},
                "error_description": {"type": "string"}
            }
        }}}
    })
}

/// The `{name}` segments of a path.
pub(super) fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

pub(super) fn path_param_meaning(name: &str) -> &'static str {
    match name {
        "did" => "device id (a malformed one answers 404 like an unknown one)",
        "product_key" => "product key (a malformed one answers 404 like an unknown one)",
        "share_id" => "share id",
        "grant_id" => "grant id",
        "client_id" => "OAuth2 client id (`rcl_...`)",
        "provider" => "OpenID Connect provider name, as configured",
        "id" => "enterprise or developer id",
        "developer_id" => "developer id",
        "invite_id" => "invitation id",
        "key_id" => "access key id (`rak_...`)",
        "webhook_id" => "webhook id (`rwh_...`)",
        "letter_id" => "dead letter id",
        _ => "",
    }
}

pub(super) fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .filter(|c| *c != '_' || !seg.starts_with('{')),
        );
    }
    id.replace("__", "_").trim_end_matches('_').to_owned()
}

// ---- schema shorthands ----

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
fn string() -> Value {
    json!({"type": "string"})
}
fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn millis() -> Value {
    r("Millis")
}
fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}
fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}
fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}
/// A strict request object: unknown fields are refused.
fn input(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties,
        "additionalProperties": false})
}
fn page(item: Value) -> Value {
    object(
        &["data", "meta"],
        json!({"data": array(item), "meta": object(&["page", "limit", "total"],
            json!({"page": int(), "limit": int(), "total": int()}))}),
    )
}
fn all(item: Value) -> Value {
    object(
        &["data", "meta"],
        json!({"data": array(item), "meta": object(&["total"], json!({"total": int()}))}),
    )
}
fn status(value: &str) -> Value {
    object(
        &["status"],
        json!({"status": {"type": "string", "const": value}}),
    )
}
fn email_or_phone(extra_required: &[&str], extra: Value) -> Value {
    let mut props = json!({"email": string(), "phone": {"type": "string",
        "description": "international form, e.g. +4915123456789"}});
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let mut v = input(extra_required, props);
    v["description"] = json!("exactly one of `email` or `phone`");
    v
}

const ACCESS: &[Auth] = &[Auth::User];
const MANAGER: &[Auth] = &[Auth::Admin, Auth::Developer];
const ADMIN: &[Auth] = &[Auth::Admin];
const ACCESS_KEY: &[Auth] = &[Auth::AccessKey];
/// The refusals of a signed request (docs/enterprise-api.md, "Errors of signed requests").
const SIGNED_REFUSALS: &[ErrorCode] = &[
    E::InvalidAuthorization,
    E::StaleTimestamp,
    E::SignatureMismatch,
    E::KeyDisabled,
    E::KeyExpired,
    E::EnterpriseSuspended,
    E::IpNotAllowed,
    E::NonceReused,
];

/// Every operation the router serves.
fn operations() -> Vec<Op> {
    let mut ops = Vec::new();
    ops.extend(service_ops());
    ops.extend(device_ops());
    ops.extend(account_ops());
    ops.extend(binding_ops());
    ops.extend(oauth_ops());
    ops.extend(enterprise_audit_and_events_ops());
    // Every call but the exempt paths counts against the per-IP and per-app-id rates.
    ops.into_iter()
        .map(|o| {
            if crate::server::limits::EXEMPT.contains(&o.path) {
                o
            } else {
                o.err(&[E::RateLimited])
            }
        })
        .collect()
}

fn service_ops() -> Vec<Op> {
    vec![
        op(
            "get",
            "/healthz",
            "service",
            "Health of the server and its store",
        )
        .ok(
            200,
            "the store answers",
            object(
                &["status", "store"],
                json!({"status": {"type": "string", "const": "ok"}, "store": one_of(&["sqlite", "postgres"])}),
            ),
        )
        .ok(
            503,
            "the store is unavailable",
            object(&["status"], json!({"status": {"type": "string", "const": "unavailable"}})),
        ),
        op("get", "/metrics", "service", "Prometheus metrics")
            .describe("The admin token, or a request signed with an access key that has the `metrics` scope (which only the operator grants). `http.metrics_listen` serves the same text without authentication on a separate, private listener.")
            .auth(&[Auth::Admin, Auth::AccessKey])
            .err(&[E::Forbidden])
            .answer(
                200,
                json!({"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}),
            )
            .err(&[E::NotFound]),
        op("get", "/openapi.json", "service", "This OpenAPI document").ok(
            200,
            "the OpenAPI 3.1 document",
            json!({"type": "object"}),
        ),
    ]
}

fn device_ops() -> Vec<Op> {
    vec![
        op(
            "get",
            "/v1/devices/{did}/passcode",
            "devices",
            "Read a device's passcode",
        )
        .describe("Audited; no other read endpoint shows it.")
        .auth(MANAGER)
        .ok(
            200,
            "the passcode",
            object(
                &["did", "passcode"],
                json!({"did": string(), "passcode": string()}),
            ),
        )
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/devices/{did}/bind-tokens",
            "bindings",
            "Mint a single-use bind token (owner)",
        )
        .auth(ACCESS)
        .ok(
            201,
            "the token, valid 10 minutes",
            object(
                &["token", "expires_at"],
                json!({"token": string(), "expires_at": millis()}),
            ),
        )
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/devices/{did}/shares",
            "bindings",
            "Offer a device to another user (owner)",
        )
        .auth(ACCESS)
        .json_body(input(
            &["user", "role"],
            json!({"user": {"type": "string", "description": "e-mail or phone"},
                    "role": one_of(&["member", "guest"])}),
        ))
        .ok(
            201,
            "the pending share",
            object(&["share_id"], json!({"share_id": string()})),
        )
        .err(&[E::InvalidRequest])
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "get",
            "/v1/devices/{did}/shares",
            "bindings",
            "Every share of a device (owner)",
        )
        .auth(ACCESS)
        .ok(200, "the shares", all(r("DeviceShare")))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "delete",
            "/v1/devices/{did}/shares/{share_id}",
            "bindings",
            "Revoke a share (owner)",
        )
        .auth(ACCESS)
        .ok(
            200,
            "revoked",
            object(
                &["share_id", "status"],
                json!({"share_id": string(), "status": {"type": "string", "const": "revoked"}}),
            ),
        )
        .err(&[E::Forbidden])
        .not_found()
        .store(),
    ]
}

fn account_ops() -> Vec<Op> {
    let pair = || r("TokenPair");
    vec![
        op("post", "/v1/apps", "accounts", "Create a client app for some products")
            .auth(ADMIN)
            .json_body(input(
                &["name", "product_keys"],
                json!({"name": string(), "product_keys": {"type": "array", "items": string(),
                    "minItems": 1, "maxItems": 100}}),
            ))
            .ok(
                201,
                "the app; the secret is shown once",
                object(&["app_id", "app_secret"], json!({"app_id": string(), "app_secret": string()})),
            )
            .err(&[E::InvalidRequest])
            .err(&[E::Conflict])
            .not_found()
            .store(),
        op("post", "/v1/users", "accounts", "Sign up an end user")
            .describe("A code goes to the address; an address with an account gets the same answer.")
            .app_header()
            .json_body(email_or_phone(&["password"], json!({"password": string()})))
            .ok(201, "activation pending", status("activation_pending"))
            .err(&[E::InvalidRequest, E::WeakPassword])
            .err(&[E::Busy])
            .store(),
        op("post", "/v1/users/activate", "accounts", "Activate an account with its code")
            .json_body(email_or_phone(&["code"], json!({"code": string()})))
            .ok(200, "active", status("active"))
            .err(&[E::InvalidRequest, E::InvalidCode])
            .store(),
        op("post", "/v1/users/activate/resend", "accounts", "Send a new activation code")
            .json_body(email_or_phone(&[], json!({})))
            .ok(202, "accepted, whether or not an inactive account exists", status("accepted"))
            .err(&[E::InvalidRequest])
            .err(&[E::RateLimited])
            .store(),
        op("post", "/v1/login", "accounts", "Log in (end user)")
            .app_header()
            .json_body(input(
                &["username", "password"],
                json!({"username": {"type": "string", "description": "e-mail or phone"},
                    "password": string()}),
            ))
            .ok(200, "a token pair", pair())
            .err(&[E::Unauthorized])
            .err(&[E::AccountNotActive])
            .err(&[E::Busy])
            .store(),
        op("post", "/v1/token/refresh", "accounts", "Spend a refresh token for a new pair")
            .json_body(input(&["refresh_token"], json!({"refresh_token": string()})))
            .ok(200, "a new token pair", pair())
            .err(&[E::Unauthorized])
            .store(),
        op("post", "/v1/logout", "accounts", "End this login")
            .auth(ACCESS)
            .ok(200, "ended", object(&["sessions_ended"], json!({"sessions_ended": int()})))
            .store(),
        op("post", "/v1/logout/all", "accounts", "End every login of the user")
            .auth(ACCESS)
            .ok(200, "ended", object(&["sessions_ended"], json!({"sessions_ended": int()})))
            .store(),
        op("get", "/v1/users/me", "accounts", "The signed-in user")
            .auth(ACCESS)
            .ok(200, "the user", r("User"))
            .not_found()
            .store(),
        op("post", "/v1/users/me/password", "accounts", "Change the password")
            .auth(ACCESS)
            .json_body(input(
                &["old_password", "new_password"],
                json!({"old_password": string(), "new_password": string()}),
            ))
            .ok(200, "changed; the user's other sessions end", status("changed"))
            .err(&[E::WeakPassword])
            .err(&[E::Forbidden])
            .err(&[E::Busy])
            .store(),
        op("post", "/v1/users/password/reset", "accounts", "Ask for a password reset code")
            .json_body(email_or_phone(&[], json!({})))
            .ok(202, "accepted, whether or not the account exists", status("accepted"))
            .err(&[E::InvalidRequest])
            .err(&[E::RateLimited])
            .store(),
        op("post", "/v1/users/password/reset/confirm", "accounts", "Set a new password with the reset code")
            .json_body(email_or_phone(
                &["code", "password"],
                json!({"code": string(), "password": string()}),
            ))
            .ok(200, "changed; every session and third-party grant ends", status("changed"))
            .err(&[E::InvalidRequest, E::InvalidCode, E::WeakPassword])
            .err(&[E::Unauthorized])
            .err(&[E::Forbidden])
            .err(&[E::Busy])
            .store(),
        op("get", "/v1/oidc/{provider}/start", "accounts", "Start an OpenID Connect login")
            .describe("Redirects to the provider, or answers `{\"authorize_url\"}` for `Accept: application/json`. Both set the browser-binding cookie `__Host-rampart_oidc` (Secure, HttpOnly, SameSite=Lax), which the callback needs.")
            .required_query("app_id", string(), "the client app")
            .redirect(303, "to the provider's authorisation endpoint")
            .ok(200, "with `Accept: application/json`",
                object(&["authorize_url"], json!({"authorize_url": string()})))
            .err(&[E::InvalidRequest])
            .err(&[E::RateLimited])
            .err(&[E::OidcProviderError])
            .not_found()
            .store(),
        op("get", "/v1/oidc/{provider}/callback", "accounts", "Finish an OpenID Connect login")
            .query("code", string(), "the provider's authorisation code")
            .query("state", string(), "the state of the start")
            .query("error", string(), "the provider refused the login")
            .ok(200, "a token pair, as from POST /v1/login", pair())
            .err(&[E::OidcStateMismatch])
            .err(&[E::OidcLoginFailed])
            .err(&[E::Conflict])
            .err(&[E::OidcProviderError])
            .not_found()
            .store(),
    ]
}

fn binding_ops() -> Vec<Op> {
    vec![
        op("post", "/v1/bindings", "bindings", "Bind a device with its passcode or a bind token")
            .describe("201 for a new binding, 200 when already bound. A wrong passcode or token answers 404 like an unknown did.")
            .auth(ACCESS)
            .json_body(input(
                &["did"],
                json!({"did": string(), "passcode": string(), "token": string()}),
            ))
            .ok(201, "bound", r("BindResult"))
            .ok(200, "already bound", r("BindResult"))
            .err(&[E::InvalidRequest])
            .err(&[E::Conflict])
            .err(&[E::RateLimited])
            .not_found()
            .store(),
        op("get", "/v1/bindings", "bindings", "The user's devices, newest first")
            .describe("An admin or developer token answers 401.")
            .auth(&[Auth::User, Auth::OAuthRead])
            .paged()
            .ok(200, "a page of bindings", page(r("Binding")))
            .err(&[E::InsufficientScope])
            .store(),
        op("delete", "/v1/bindings/{did}", "bindings", "Unbind a device")
            .describe("The owner's unbind removes every binding, share and bind token of the device.")
            .auth(ACCESS)
            .ok(
                200,
                "unbound",
                object(&["did", "status"], json!({"did": string(), "status": {"type": "string", "const": "unbound"}})),
            )
            .not_found()
            .store(),
        op("get", "/v1/shares", "bindings", "The shares offered to the user")
            .auth(ACCESS)
            .paged()
            .ok(200, "a page of shares", page(r("Share")))
            .store(),
        op("post", "/v1/shares/{share_id}/accept", "bindings", "Accept a share")
            .auth(ACCESS)
            .ok(200, "the share, now accepted", r("Share"))
            .err(&[E::Conflict])
            .not_found()
            .store(),
        op("delete", "/v1/shares/{share_id}", "bindings", "Decline or give up a share")
            .auth(ACCESS)
            .ok(
                200,
                "declined",
                object(&["share_id", "status"],
                    json!({"share_id": string(), "status": {"type": "string", "const": "declined"}})),
            )
            .not_found()
            .store(),
        op("get", "/v1/ws", "bindings", "Live push of device events (WebSocket)")
            .describe("Upgrades to a WebSocket streaming one `LiveEvent` JSON text message per event, for every device the user may read. Closes with 4401 when the token expires or is revoked.")
            .auth(&[Auth::User, Auth::UserQuery])
            .answer(101, json!({"description": "switching to the WebSocket; messages are `LiveEvent`"}))
            .err(&[E::UpgradeRequired])
            .err(&[E::RateLimited])
            .store(),
        op("get", "/v1/developers/ws", "developers", "Live push of the developer's devices (WebSocket)")
            .describe("Upgrades to a WebSocket streaming one `LiveEvent` JSON text message per event, for every device of a product the developer may read (personal products, and enterprise products for any member role). A membership, role or suspension change applies before the next event. Closes with 4401 when the token expires or is revoked.")
            .auth(&[Auth::Developer, Auth::UserQuery])
            .answer(101, json!({"description": "switching to the WebSocket; messages are `LiveEvent`"}))
            .err(&[E::UpgradeRequired])
            .err(&[E::RateLimited])
            .store(),
    ]
}

fn oauth_ops() -> Vec<Op> {
    let authorize_query = |o: Op| {
        o.query(
            "response_type",
            json!({"type": "string", "const": "code"}),
            "must be `code`",
        )
        .query("client_id", string(), "the client")
        .query(
            "redirect_uri",
            string(),
            "a redirect URI registered for the client",
        )
        .query(
            "scope",
            string(),
            "space-separated: `devices:read`, `devices:control`, `devices:admin`",
        )
        .query("state", string(), "echoed back to the client")
        .query("code_challenge", string(), "PKCE challenge")
        .query(
            "code_challenge_method",
            json!({"type": "string", "const": "S256"}),
            "must be `S256`",
        )
    };
    let client_errors = |o: Op| {
        o.oauth_err(400, &["invalid_request"])
            .oauth_err(401, &["invalid_client"])
            .oauth_err(500, &["server_error"])
    };
    let mut authorize = authorize_query(op(
        "get",
        "/oauth/authorize",
        "oauth",
        "The consent page of an authorisation request",
    ))
    .html(200, "the consent page (sets the CSRF cookie)")
    .redirect(
        303,
        "back to the client with `error` (a bad request after the client was recognised)",
    )
    .html_err(
        400,
        "an HTML error page: unknown client, unregistered redirect URI, malformed request",
    )
    .html_err(500, "an HTML error page");
    // The query is parsed by the handler itself: a bad one answers the HTML page, not JSON.
    authorize.errors.clear();
    vec![
        op("post", "/v1/oauth/clients", "oauth", "Register a third-party client")
            .describe("By the operator or a developer (the client's owner). `public: true` registers a public client: no secret, PKCE alone (`token_endpoint_auth_method: none`).")
            .auth(MANAGER)
            .json_body(input(
                &["name", "redirect_uris", "scopes"],
                json!({"name": string(), "redirect_uris": array(string()),
                    "scopes": array(one_of(&["devices:read", "devices:control", "devices:admin"])),
                    "public": boolean()}),
            ))
            .ok(201, "the client; a confidential client's secret is shown once", r("OAuthClient"))
            .err(&[E::InvalidRequest])
            .err(&[E::Conflict])
            .store(),
        op("get", "/v1/oauth/clients", "oauth", "The clients the caller manages")
            .describe("The operator sees every client, a developer the clients they registered.")
            .auth(MANAGER)
            .paged()
            .ok(200, "a page of clients, oldest first", page(r("OAuthClientView")))
            .store(),
        op("get", "/v1/oauth/clients/{client_id}", "oauth", "One client the caller manages")
            .auth(MANAGER)
            .ok(200, "the client (never its secret)", r("OAuthClientView"))
            .not_found()
            .store(),
        op("patch", "/v1/oauth/clients/{client_id}", "oauth", "Change a client's name or redirect URIs")
            .auth(MANAGER)
            .json_body(input(&[], json!({"name": string(), "redirect_uris": array(string())})))
            .ok(200, "the changed client", r("OAuthClientView"))
            .err(&[E::InvalidRequest])
            .not_found()
            .store(),
        op("delete", "/v1/oauth/clients/{client_id}", "oauth", "Delete a client, its grants and tokens")
            .auth(MANAGER)
            .ok(
                200,
                "deleted; every token issued to it stops working",
                object(&["client_id", "status", "grants_revoked"],
                    json!({"client_id": string(), "status": {"type": "string", "const": "deleted"},
                        "grants_revoked": int()})),
            )
            .not_found()
            .store(),
        op("post", "/v1/oauth/clients/{client_id}/secret/rotate", "oauth", "A new secret for a confidential client")
            .describe("The old secret stops working at once; the new one is shown once.")
            .auth(MANAGER)
            .ok(
                200,
                "the new secret",
                object(&["client_id", "client_secret"],
                    json!({"client_id": string(), "client_secret": string()})),
            )
            .err(&[E::Conflict])
            .not_found()
            .store(),
        op("get", "/v1/oauth/grants", "oauth", "The third-party grants of the user")
            .auth(ACCESS)
            .paged()
            .ok(200, "a page of grants", page(r("OAuthGrant")))
            .store(),
        op("delete", "/v1/oauth/grants/{grant_id}", "oauth", "Revoke a grant and its tokens")
            .auth(ACCESS)
            .ok(
                200,
                "revoked",
                object(&["grant_id", "status"],
                    json!({"grant_id": string(), "status": {"type": "string", "const": "revoked"}})),
            )
            .not_found()
            .store(),
        authorize,
        op("post", "/oauth/authorize", "oauth", "Approve or deny an authorisation request as the signed-in user")
            .describe("For apps with the user's own token. A 400 for a recognised client also carries `redirect_to`.")
            .auth(ACCESS)
            .json_body(r("Approval"))
            .ok(
                200,
                "where to send the user agent (with `code` and `state` when approved)",
                object(&["redirect_to"], json!({"redirect_to": string(), "code": string(),
                    "state": nullable("string")})),
            )
            .err(&[E::InvalidRequest, E::InvalidClient, E::InvalidScope, E::UnsupportedResponseType])
            .store(),
        op("post", "/oauth/authorize/consent", "oauth", "Answer the consent form")
            .describe("The form of the consent page: the authorisation request, `csrf` (matching the cookie), `username`, `password`, `approve` (repeatable scope) and `decision`.")
            .form_body(json!({"type": "object", "properties": {
                "response_type": string(), "client_id": string(), "redirect_uri": string(),
                "scope": string(), "state": string(), "code_challenge": string(),
                "code_challenge_method": string(), "csrf": string(), "username": string(),
                "password": string(), "approve": array(string()),
                "decision": one_of(&["approve", "deny"])}}))
            .redirect(303, "back to the client with `code` and `state`, or `error=access_denied`")
            .html(200, "the consent page again, with a notice (no scope chosen, inactive account)")
            .html_err(400, "an HTML error page: malformed form or authorisation request")
            .html_err(401, "the consent page again: wrong e-mail, phone or password")
            .html_err(403, "an HTML error page: the CSRF cookie does not match")
            .html_err(500, "an HTML error page"),
        client_errors(
            op("post", "/oauth/token", "oauth", "Exchange a code or a refresh token (RFC 6749)")
                .describe("Client authentication by HTTP Basic or by `client_id`/`client_secret` form fields (one of them).")
                .auth(&[Auth::Client])
                .form_body(json!({"type": "object", "required": ["grant_type"], "properties": {
                    "grant_type": one_of(&["authorization_code", "refresh_token"]),
                    "code": string(), "redirect_uri": string(), "code_verifier": string(),
                    "refresh_token": string(), "scope": string(),
                    "client_id": string(), "client_secret": string()}}))
                .ok(200, "the tokens", r("OAuthTokens")),
        )
        .oauth_err(
            400,
            &["invalid_grant", "unsupported_grant_type", "invalid_scope"],
        ),
        client_errors(
            op("post", "/oauth/revoke", "oauth", "Revoke a token (RFC 7009)")
                .describe("200 whether or not the token was known.")
                .auth(&[Auth::Client])
                .form_body(json!({"type": "object", "required": ["token"], "properties": {
                    "token": string(), "token_type_hint": string(),
                    "client_id": string(), "client_secret": string()}}))
                .answer(200, json!({"description": "revoked (or unknown); empty body"})),
        ),
    ]
    .into_iter()
    .map(|mut o| {
        // The client-authenticated endpoints answer RFC 6749 errors only.
        if o.auth == [Auth::Client] {
            o.errors.clear();
        }
        o
    })
    .collect()
}

/// The audit query of `GET /v1/enterprise/audit` and `GET /v1/enterprises/{id}/audit`.
fn audit_query(o: Op) -> Op {
    o.query("actor", string(), "only entries of this actor id")
        .query("actor_kind", string(), "only entries of this actor kind")
        .query("action", string(), "only entries of this action")
        .query("target", string(), "only entries with this target")
        .query("from", int(), "from this time (unix ms, inclusive)")
        .query("to", int(), "up to this time (unix ms, inclusive)")
        .paged()
}

/// The enterprise audit entries (through a manager's token and through a signed request) and the
/// operator event stream over WebSocket (docs/enterprise-api.md). A signed request's device or
/// product the key does not reach answers 404 like an unknown one; a key without the scope an
/// endpoint needs answers 403.
fn enterprise_audit_and_events_ops() -> Vec<Op> {
    vec![
        audit_query(
            op(
                "get",
                "/v1/enterprises/{id}/audit",
                "enterprises",
                "An enterprise's audit entries, newest first",
            )
            .describe(
                "For the enterprise's owners and the operator; its admins and observers get 403.",
            )
            .auth(MANAGER),
        )
        .ok(200, "a page of audit entries", page(r("AuditEntry")))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        audit_query(
            op(
                "get",
                "/v1/enterprise/audit",
                "enterprise api",
                "The enterprise's audit entries, newest first (scope `read`)",
            )
            .describe("Audited (`audit.read`).")
            .auth(ACCESS_KEY),
        )
        .ok(200, "a page of audit entries", page(r("AuditEntry")))
        .err(&[E::Forbidden]),
        op(
            "get",
            "/v1/enterprise/events",
            "enterprise api",
            "The operator event stream (WebSocket, scope `read`)",
        )
        .describe("Upgrades to a WebSocket carrying the event stream's JSON messages (see docs/enterprise-api.md): first `login_res`, then `event_push` messages to acknowledge with `event_ack`; `ping`, `remote_control_req` (scope `control`). The same stream is served as JSON lines on the TLS socket (`events.listen`, default port 2017).")
        .auth(ACCESS_KEY)
        .query("products", string(), "comma-separated product keys of the key's enterprise")
        .query("subkey", string(), "the subscription group: 1-32 of A-Z a-z 0-9 _")
        .query("prefetch", json!({"type": "integer", "minimum": 1, "maximum": 32767, "default": 50}), "most unacknowledged events at once")
        .query("events", string(), "comma-separated event kinds; empty: all")
        .answer(101, json!({"description": "switching to the WebSocket"}))
        .err(&[E::UpgradeRequired])
        .err(&[E::Forbidden])
        .not_found(),
    ]
}

/// The schemas of the described operations (those the derived groups name are theirs).
pub(super) fn schemas() -> Map<String, Value> {
    let role = one_of(&["owner", "member", "guest"]);
    let share = json!({"share_id": string(), "did": string(), "role": role,
        "status": one_of(&["pending", "accepted"]), "created_at": millis(),
        "accepted_at": nullable("integer")});
    let mut device_share = share.clone();
    device_share["user"] =
        json!({"type": "string", "description": "the invitee's e-mail or phone"});
    let share_keys = [
        "share_id",
        "did",
        "role",
        "status",
        "created_at",
        "accepted_at",
    ];
    let mut device_share_keys = share_keys.to_vec();
    device_share_keys.push("user");
    let values = json!({"type": "object", "description": "data point name -> value",
        "additionalProperties": true});
    let list: Vec<(&str, Value)> = vec![
        (
            "Millis",
            json!({"type": "integer", "format": "int64", "description": "Unix time in milliseconds"}),
        ),
        (
            "TokenPair",
            object(
                &["access_token", "refresh_token", "expires_in"],
                json!({
            "access_token": string(), "refresh_token": string(),
            "expires_in": {"type": "integer", "description": "seconds"}}),
            ),
        ),
        (
            "User",
            object(
                &["user_id", "email", "phone", "active", "created_at"],
                json!({
            "user_id": string(), "email": nullable("string"), "phone": nullable("string"),
            "active": boolean(), "created_at": millis()}),
            ),
        ),
        (
            "BindResult",
            object(&["did", "role"], json!({"did": string(), "role": role})),
        ),
        (
            "Binding",
            object(
                &["did", "product_key", "role", "bound_at"],
                json!({"did": string(),
            "product_key": string(), "role": role, "bound_at": millis()}),
            ),
        ),
        ("Share", object(&share_keys, share)),
        ("DeviceShare", object(&device_share_keys, device_share)),
        (
            "LiveEvent",
            json!({"description": "a message of the live push (`GET /v1/ws`)", "oneOf": [
            object(&["did", "kind", "ts", "values"], json!({"did": string(), "kind": {"type": "string", "const": "status"},
                "ts": millis(), "values": values})),
            object(&["did", "kind", "online", "ts"], json!({"did": string(), "kind": {"type": "string", "const": "presence"},
                "online": boolean(), "ts": millis(), "reason": string()})),
            object(&["did", "kind", "id", "status", "ts"], json!({"did": string(), "kind": {"type": "string", "const": "ack"},
                "id": string(), "status": one_of(&["ok", "error"]), "ts": millis()}))]}),
        ),
        (
            "OAuthClient",
            object(
                &[
                    "client_id",
                    "name",
                    "redirect_uris",
                    "scopes",
                    "public",
                    "token_endpoint_auth_method",
                ],
                json!({
            "client_id": string(),
            "client_secret": {"type": "string", "description": "confidential clients only; shown once"},
            "name": string(), "redirect_uris": array(string()), "scopes": array(string()),
            "public": boolean(),
            "token_endpoint_auth_method": one_of(&["client_secret_basic", "none"])}),
            ),
        ),
        (
            "OAuthClientView",
            object(
                &[
                    "client_id",
                    "name",
                    "redirect_uris",
                    "scopes",
                    "public",
                    "token_endpoint_auth_method",
                    "owner",
                    "created_at",
                    "updated_at",
                ],
                json!({
            "client_id": string(), "name": string(), "redirect_uris": array(string()),
            "scopes": array(string()), "public": boolean(),
            "token_endpoint_auth_method": one_of(&["client_secret_basic", "none"]),
            "owner": {"type": "string", "description": "who registered it: `admin:bootstrap` or `developer:DEVELOPER_ID`"},
            "created_at": millis(), "updated_at": {"oneOf": [millis(), {"type": "null"}]}}),
            ),
        ),
        (
            "OAuthGrant",
            object(
                &[
                    "grant_id",
                    "client_id",
                    "client_name",
                    "scope",
                    "created_at",
                    "expires_at",
                ],
                json!({"grant_id": string(), "client_id": string(), "client_name": string(),
                "scope": string(), "created_at": millis(), "expires_at": millis()}),
            ),
        ),
        (
            "OAuthTokens",
            object(
                &[
                    "access_token",
                    "token_type",
                    "expires_in",
                    "refresh_token",
                    "scope",
                ],
                json!({
            "access_token": string(), "token_type": {"type": "string", "const": "Bearer"},
            "expires_in": {"type": "integer", "description": "seconds"},
            "refresh_token": string(), "scope": string()}),
            ),
        ),
        (
            "Approval",
            json!({"type": "object", "properties": {
            "response_type": string(), "client_id": string(), "redirect_uri": string(),
            "scope": string(), "state": string(), "code_challenge": string(),
            "code_challenge_method": string(),
            "decision": {"type": "string", "enum": ["approve", "deny"], "default": "approve"},
            "approved_scope": {"type": "string", "description": "a subset of `scope`; all of it when absent"}}}),
        ),
        (
            "AuditEntry",
            object(
                &[
                    "id",
                    "ts",
                    "actor_kind",
                    "actor_id",
                    "tenant",
                    "action",
                    "target",
                    "source_ip",
                    "outcome",
                    "detail",
                    "hash",
                ],
                json!({"id": int(), "ts": millis(), "actor_kind": string(), "actor_id": string(),
            "tenant": nullable("string"), "action": string(), "target": nullable("string"),
            "source_ip": nullable("string"), "outcome": string(), "detail": nullable("string"),
            "hash": {"type": ["string", "null"],
                "description": "the entry's hash in the audit chain (null before migration 0007)"}}),
            ),
        ),
    ];
    list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The path items of the `described` paths: method -> operation.
pub(super) fn paths(described: &BTreeSet<&'static str>) -> BTreeMap<String, Map<String, Value>> {
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for o in operations() {
        if described.contains(o.path) {
            out.entry(o.path.to_owned())
                .or_default()
                .insert(o.method.to_owned(), o.to_json());
        }
    }
    out
}

/// Every path the table describes, for the test that each is routed.
#[cfg(test)]
pub(super) fn all_paths() -> BTreeSet<&'static str> {
    operations().iter().map(|o| o.path).collect()
}
