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
    /// A developer's `rdt_` access token.
    Developer,
    /// A request signed with an enterprise access key (`Authorization: RAMPART-HMAC-SHA256 ...`).
    AccessKey,
}

impl Auth {
    fn requirement(self) -> Value {
        match self {
            Auth::Admin => json!({"admin": []}),
            Auth::Developer => json!({"developer": []}),
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
    /// A strict JSON body (`Body<T>`): its rejections answer 400, 413 and 415.
    fn json_body(mut self, schema: Value) -> Op {
        self.body = Some(json!({"required": true,
            "content": {"application/json": {"schema": schema}}}));
        self.err(&[E::InvalidJson])
            .err(&[E::PayloadTooLarge])
            .err(&[E::UnsupportedMediaType])
    }
    /// A JSON body read as raw bytes (no `Content-Type` is required), perhaps optional.
    fn raw_json_body(mut self, required: bool, schema: Value) -> Op {
        self.body = Some(json!({"required": required,
            "content": {"application/json": {"schema": schema}}}));
        self.err(&[E::InvalidJson])
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
    fn err(mut self, codes: &[ErrorCode]) -> Op {
        self.errors.extend(codes);
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
        o.insert("responses".into(), Value::Object(responses));
        if !self.auth.is_empty() {
            let reqs: Vec<Value> = self.auth.iter().map(|a| a.requirement()).collect();
            o.insert("security".into(), Value::Array(reqs));
        }
        Value::Object(o)
    }
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
const MANAGER: &[Auth] = &[Auth::Admin, Auth::Developer];
const ADMIN: &[Auth] = &[Auth::Admin];
const DEVELOPER: &[Auth] = &[Auth::Developer];
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
    ops.extend(developer_ops());
    ops.extend(enterprise_ops());
    ops.extend(access_key_ops());
    ops.extend(enterprise_api_ops());
    ops.extend(webhook_ops());
    ops.extend(operator_ops());
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

fn developer_ops() -> Vec<Op> {
    let pair = || r("TokenPair");
    let email_only = || input(&["email"], json!({"email": string()}));
    vec![
        op(
            "post",
            "/v1/developers",
            "developers",
            "Sign up a developer",
        )
        .json_body(input(
            &["email", "password"],
            json!({"email": string(), "password": string()}),
        ))
        .ok(201, "activation pending", status("activation_pending"))
        .err(&[E::InvalidRequest, E::WeakPassword])
        .err(&[E::Busy])
        .store(),
        op(
            "post",
            "/v1/developers/activate",
            "developers",
            "Activate a developer account",
        )
        .json_body(input(
            &["email", "code"],
            json!({"email": string(), "code": string()}),
        ))
        .ok(200, "active", status("active"))
        .err(&[E::InvalidRequest, E::InvalidCode])
        .store(),
        op(
            "post",
            "/v1/developers/activate/resend",
            "developers",
            "Send a new activation code",
        )
        .json_body(email_only())
        .ok(202, "accepted", status("accepted"))
        .err(&[E::InvalidRequest])
        .err(&[E::RateLimited])
        .store(),
        op(
            "post",
            "/v1/developers/password/reset",
            "developers",
            "Ask for a password reset code",
        )
        .json_body(email_only())
        .ok(
            202,
            "accepted, whether or not the account exists",
            status("accepted"),
        )
        .err(&[E::InvalidRequest])
        .err(&[E::RateLimited])
        .store(),
        op(
            "post",
            "/v1/developers/password/reset/confirm",
            "developers",
            "Set a new password with the reset code",
        )
        .json_body(input(
            &["email", "code", "password"],
            json!({"email": string(), "code": string(), "password": string()}),
        ))
        .ok(
            200,
            "changed; every session ends (TOTP stays on)",
            status("changed"),
        )
        .err(&[E::InvalidRequest, E::InvalidCode, E::WeakPassword])
        .err(&[E::Busy])
        .store(),
        op(
            "post",
            "/v1/developers/login",
            "developers",
            "Log in (developer)",
        )
        .json_body(input(
            &["email", "password"],
            json!({"email": string(), "password": string(), "totp": string(),
                    "recovery_code": string()}),
        ))
        .ok(200, "a token pair", pair())
        .err(&[E::Unauthorized, E::TotpRequired])
        .err(&[E::AccountNotActive, E::AccountSuspended])
        .err(&[E::Busy])
        .store(),
        op(
            "post",
            "/v1/developers/token/refresh",
            "developers",
            "Spend a refresh token for a new pair",
        )
        .json_body(input(
            &["refresh_token"],
            json!({"refresh_token": string()}),
        ))
        .ok(200, "a new token pair", pair())
        .err(&[E::Unauthorized])
        .store(),
        op(
            "post",
            "/v1/developers/logout",
            "developers",
            "End this login",
        )
        .auth(DEVELOPER)
        .ok(
            200,
            "ended",
            object(&["sessions_ended"], json!({"sessions_ended": int()})),
        )
        .store(),
        op(
            "get",
            "/v1/developers/me",
            "developers",
            "The signed-in developer and their enterprises",
        )
        .auth(DEVELOPER)
        .ok(200, "the developer", r("DeveloperMe"))
        .not_found()
        .store(),
        op(
            "post",
            "/v1/developers/me/password",
            "developers",
            "Change the password",
        )
        .auth(DEVELOPER)
        .json_body(input(
            &["old_password", "new_password"],
            json!({"old_password": string(), "new_password": string()}),
        ))
        .ok(
            200,
            "changed; the developer's other sessions end",
            status("changed"),
        )
        .err(&[E::WeakPassword])
        .err(&[E::Forbidden])
        .err(&[E::Busy])
        .store(),
        op(
            "post",
            "/v1/developers/me/totp",
            "developers",
            "Start TOTP enrolment",
        )
        .auth(DEVELOPER)
        .ok(
            201,
            "the secret; TOTP stays off until confirmed",
            object(
                &["secret", "otpauth_uri"],
                json!({"secret": string(), "otpauth_uri": string()}),
            ),
        )
        .err(&[E::Conflict])
        .store(),
        op(
            "post",
            "/v1/developers/me/totp/confirm",
            "developers",
            "Confirm TOTP with a first code",
        )
        .auth(DEVELOPER)
        .json_body(input(&["code"], json!({"code": string()})))
        .ok(
            200,
            "recovery codes, shown once",
            object(
                &["recovery_codes"],
                json!({"recovery_codes": array(string())}),
            ),
        )
        .err(&[E::InvalidCode])
        .err(&[E::Conflict])
        .store(),
        op(
            "post",
            "/v1/developers/me/totp/disable",
            "developers",
            "Turn TOTP off",
        )
        .auth(DEVELOPER)
        .json_body(input(
            &["password"],
            json!({"password": string(), "totp": string(), "recovery_code": string()}),
        ))
        .ok(
            200,
            "off",
            object(
                &["totp_enabled"],
                json!({"totp_enabled": {"type": "boolean", "const": false}}),
            ),
        )
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .err(&[E::Busy])
        .store(),
        op(
            "get",
            "/v1/developers/me/invites",
            "developers",
            "Invitations addressed to the developer",
        )
        .auth(DEVELOPER)
        .ok(200, "the invitations", all(r("Invite")))
        .store(),
        op(
            "post",
            "/v1/developers/me/invites/{invite_id}/accept",
            "developers",
            "Accept an invitation",
        )
        .auth(DEVELOPER)
        .ok(200, "the enterprise joined", r("Enterprise"))
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "delete",
            "/v1/developers/me/invites/{invite_id}",
            "developers",
            "Decline an invitation",
        )
        .auth(DEVELOPER)
        .ok(
            200,
            "declined",
            object(
                &["invite_id", "status"],
                json!({"invite_id": string(), "status": {"type": "string", "const": "declined"}}),
            ),
        )
        .not_found()
        .store(),
    ]
}

fn enterprise_ops() -> Vec<Op> {
    let role = || one_of(&["owner", "admin", "observer"]);
    vec![
        op(
            "post",
            "/v1/enterprises",
            "enterprises",
            "Create an enterprise",
        )
        .describe(
            "A developer creates an enterprise and becomes its owner; the operator (admin token) \
             creates one with no member (`role` null) and invites its owners.",
        )
        .auth(MANAGER)
        .json_body(input(&["name"], json!({"name": string()})))
        .ok(201, "the enterprise", r("Enterprise"))
        .err(&[E::InvalidRequest])
        .err(&[E::Conflict])
        .store(),
        op(
            "get",
            "/v1/enterprises",
            "enterprises",
            "The caller's enterprises",
        )
        .auth(DEVELOPER)
        .ok(
            200,
            "the enterprises with the caller's role",
            all(r("Enterprise")),
        )
        .store(),
        op(
            "get",
            "/v1/enterprises/{id}",
            "enterprises",
            "An enterprise",
        )
        .auth(MANAGER)
        .ok(200, "the enterprise and the caller's role", r("Enterprise"))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "get",
            "/v1/enterprises/{id}/members",
            "enterprises",
            "An enterprise's members",
        )
        .auth(MANAGER)
        .ok(200, "the members", all(r("Member")))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "put",
            "/v1/enterprises/{id}/members/{developer_id}",
            "enterprises",
            "Change a member's role",
        )
        .auth(MANAGER)
        .json_body(input(&["role"], json!({"role": role()})))
        .ok(
            200,
            "changed",
            object(
                &["developer_id", "role"],
                json!({"developer_id": string(), "role": role()}),
            ),
        )
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "delete",
            "/v1/enterprises/{id}/members/{developer_id}",
            "enterprises",
            "Remove a member (or leave)",
        )
        .auth(MANAGER)
        .ok(
            200,
            "removed",
            object(
                &["developer_id", "status"],
                json!({"developer_id": string(), "status": {"type": "string", "const": "removed"}}),
            ),
        )
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/enterprises/{id}/invites",
            "enterprises",
            "Invite a developer by e-mail",
        )
        .auth(MANAGER)
        .json_body(input(
            &["email", "role"],
            json!({"email": string(), "role": role()}),
        ))
        .ok(
            201,
            "the invitation",
            object(&["invite_id"], json!({"invite_id": string()})),
        )
        .err(&[E::InvalidRequest])
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .not_found()
        .store(),
    ]
}

/// Access-key management (docs/enterprise-api.md): the operator and the enterprise's owners and
/// admins; observers get 403, anyone else 404.
fn access_key_ops() -> Vec<Op> {
    vec![
        op(
            "post",
            "/v1/enterprises/{id}/keys",
            "enterprises",
            "Create an access key",
        )
        .describe("Audited (`access_key.create`). The secret is answered only here.")
        .auth(MANAGER)
        .json_body(r("NewAccessKey"))
        .ok(
            201,
            "the key id and its secret, shown once",
            r("CreatedKey"),
        )
        .err(&[E::InvalidRequest])
        .err(&[E::Forbidden])
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "get",
            "/v1/enterprises/{id}/keys",
            "enterprises",
            "An enterprise's access keys (never a secret)",
        )
        .auth(MANAGER)
        .ok(200, "the keys", all(r("AccessKey")))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "delete",
            "/v1/enterprises/{id}/keys/{key_id}",
            "enterprises",
            "Delete an access key",
        )
        .describe("Audited (`access_key.delete`). The key stops working at once.")
        .auth(MANAGER)
        .ok(
            200,
            "deleted",
            object(
                &["key_id", "status"],
                json!({"key_id": string(), "status": {"type": "string", "const": "deleted"}}),
            ),
        )
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/enterprises/{id}/keys/{key_id}/disable",
            "enterprises",
            "Disable an access key",
        )
        .describe("Audited (`access_key.disable`). Requests with it answer 401 `KEY_DISABLED`.")
        .auth(MANAGER)
        .ok(200, "the key, `disabled` true", r("AccessKey"))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/enterprises/{id}/keys/{key_id}/enable",
            "enterprises",
            "Enable a disabled access key",
        )
        .describe("Audited (`access_key.enable`).")
        .auth(MANAGER)
        .ok(200, "the key, `disabled` false", r("AccessKey"))
        .err(&[E::Forbidden])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/enterprises/{id}/keys/{key_id}/rotate",
            "enterprises",
            "Give an access key a new secret",
        )
        .describe(
            "Audited (`access_key.rotate`). The secret it replaces keeps working until \
             `previous_valid_until`; a rotation during an overlap ends the older overlap. \
             The body may be left out.",
        )
        .auth(MANAGER)
        .raw_json_body(
            false,
            input(
                &[],
                json!({"overlap_secs": {"type": "integer", "minimum": 0, "maximum": 604800,
                "default": 3600, "description": "how long the replaced secret keeps working"}}),
            ),
        )
        .ok(
            200,
            "the new secret, shown once",
            object(
                &["key_id", "secret", "previous_valid_until"],
                json!({"key_id": string(), "secret": string(), "previous_valid_until": millis()}),
            ),
        )
        .err(&[E::InvalidRequest])
        .err(&[E::Forbidden])
        .not_found()
        .store(),
    ]
}

/// The endpoints business systems call with requests signed by an access key
/// (docs/enterprise-api.md). A device or product the key does not reach answers 404 like an
/// unknown one; a key without the scope an endpoint needs answers 403.
fn enterprise_api_ops() -> Vec<Op> {
    vec![
        op(
            "get",
            "/v1/enterprise/devices",
            "enterprise api",
            "The devices of the key's products (scope `read`)",
        )
        .describe("Audited (`enterprise.device_list`). Sensitive points the key does not name are left out of `state`.")
        .auth(ACCESS_KEY)
        .query("product_key", string(), "only this product's devices (one the key names, else 404)")
        .paged()
        .ok(200, "a page of devices", page(r("DeviceView")))
        .err(&[E::Forbidden])
        .not_found(),
        op(
            "get",
            "/v1/enterprise/devices/{did}",
            "enterprise api",
            "A device, its state and presence (scope `read`)",
        )
        .describe("Audited (`enterprise.device_read`). Sensitive points the key does not name are left out of `state`.")
        .auth(ACCESS_KEY)
        .ok(200, "the device", r("DeviceView"))
        .err(&[E::Forbidden])
        .not_found(),
        op(
            "get",
            "/v1/enterprise/devices/{did}/history",
            "enterprise api",
            "A device's reported values, newest first (scope `read`)",
        )
        .describe("Audited (`enterprise.device_history`). Sensitive points the key does not name are left out.")
        .auth(ACCESS_KEY)
        .query("point", string(), "only this data point")
        .query("from", int(), "from this time (unix ms)")
        .query("to", int(), "up to this time (unix ms)")
        .query(
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
            "at most this many values",
        )
        .ok(
            200,
            "the values",
            object(
                &["data", "meta"],
                json!({"data": array(r("HistoryPoint")),
                    "meta": object(&["limit", "count"], json!({"limit": int(), "count": int()}))}),
            ),
        )
        .err(&[E::Forbidden])
        .not_found(),
        op(
            "post",
            "/v1/enterprise/devices/{did}/commands",
            "enterprise api",
            "Send a command to a device (scope `control`)",
        )
        .describe(
            "Validated and delivered like `POST /v1/devices/{did}/commands`; audited as \
             `device.command` with the key as actor. The body is read as signed: no \
             `Content-Type` is required.",
        )
        .auth(ACCESS_KEY)
        .raw_json_body(true, r("CommandRequest"))
        .ok(200, "the device's acknowledgement", r("Ack"))
        .ok(
            202,
            "queued in a parked persistent session",
            object(
                &["id", "status"],
                json!({"id": string(), "status": {"type": "string", "const": "queued"}}),
            ),
        )
        .err(&[E::InvalidJson, E::InvalidRequest, E::InvalidDatapoint])
        .err(&[E::Forbidden])
        .err(&[E::DeviceOffline])
        .err(&[E::CommandTimeout])
        .not_found(),
    ]
}

/// Webhooks of the event stream and their dead letters (docs/enterprise-api.md, "Webhooks"): a
/// webhook the key does not see (another enterprise's, or with a product the key does not name)
/// answers 404 like an unknown one; reading needs `read`, changing needs `control` (else 403).
fn webhook_ops() -> Vec<Op> {
    let hook = |method: &'static str, path: &'static str, summary: &'static str| {
        op(method, path, "enterprise api", summary)
            .auth(ACCESS_KEY)
            .err(&[E::Forbidden])
            .not_found()
    };
    let counted = |what: &str| {
        object(
            &["webhook_id", what],
            json!({"webhook_id": string(), what: int()}),
        )
    };
    vec![
        hook(
            "post",
            "/v1/enterprise/webhooks",
            "Create a webhook (scope `control`)",
        )
        .describe(
            "Events of the named products (of the kinds named, as for a stream login; none: all) \
             are POSTed to `url`, signed with the returned secret, shown only here. Audited \
             (`webhook.create`). The body is read as signed: no `Content-Type` is required.",
        )
        .raw_json_body(
            true,
            input(
                &["url", "products"],
                json!({"url": {"type": "string", "format": "uri", "maxLength": 2048},
                    "products": array(string()),
                    "events": {"type": "array", "items": string(),
                        "description": "event kinds; empty or absent: all"}}),
            ),
        )
        .ok(201, "the webhook and its secret", r("CreatedWebhook"))
        .err(&[E::InvalidRequest, E::WebhookUrlRefused])
        .err(&[E::Conflict]),
        hook(
            "get",
            "/v1/enterprise/webhooks",
            "The webhooks the key sees (scope `read`)",
        )
        .paged()
        .ok(200, "a page of webhooks", page(r("Webhook"))),
        hook(
            "get",
            "/v1/enterprise/webhooks/{webhook_id}",
            "A webhook (scope `read`)",
        )
        .ok(200, "the webhook", r("Webhook")),
        hook(
            "delete",
            "/v1/enterprise/webhooks/{webhook_id}",
            "Delete a webhook with its queued events and dead letters (scope `control`)",
        )
        .describe("Audited (`webhook.delete`).")
        .ok(
            200,
            "deleted",
            object(
                &["webhook_id", "status"],
                json!({"webhook_id": string(), "status": {"type": "string", "const": "deleted"}}),
            ),
        ),
        hook(
            "post",
            "/v1/enterprise/webhooks/{webhook_id}/disable",
            "Pause a webhook (scope `control`)",
        )
        .describe(
            "Audited (`webhook.disable`). Its events stay queued (within `events.retention_secs`) \
             and are delivered once it is enabled.",
        )
        .ok(200, "the webhook", r("Webhook")),
        hook(
            "post",
            "/v1/enterprise/webhooks/{webhook_id}/enable",
            "Resume a webhook (scope `control`)",
        )
        .describe("Audited (`webhook.enable`).")
        .ok(200, "the webhook", r("Webhook")),
        hook(
            "get",
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters",
            "A webhook's dead letters, oldest first (scope `read`)",
        )
        .paged()
        .ok(200, "a page of dead letters", page(r("DeadLetter"))),
        hook(
            "delete",
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters",
            "Delete all of a webhook's dead letters (scope `control`)",
        )
        .describe("Audited (`webhook.dead_letters_delete`).")
        .ok(200, "how many were deleted", counted("deleted")),
        hook(
            "post",
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters/redrive",
            "Queue all of a webhook's dead letters again (scope `control`)",
        )
        .describe(
            "They are delivered after what is queued already, in their order, with new \
             `delivery_id`s. Audited (`webhook.redrive`).",
        )
        .ok(200, "how many were queued", counted("redriven")),
        hook(
            "delete",
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}",
            "Delete one dead letter (scope `control`)",
        )
        .describe("Audited (`webhook.dead_letters_delete`).")
        .ok(200, "deleted", counted("deleted")),
        hook(
            "post",
            "/v1/enterprise/webhooks/{webhook_id}/dead-letters/{letter_id}/redrive",
            "Queue one dead letter again (scope `control`)",
        )
        .describe("Audited (`webhook.redrive`).")
        .ok(200, "queued", counted("redriven")),
    ]
}

fn operator_ops() -> Vec<Op> {
    vec![
        op(
            "post",
            "/v1/admin/developers",
            "operator",
            "Create an active developer account",
        )
        .auth(ADMIN)
        .json_body(input(
            &["email", "password"],
            json!({"email": string(), "password": string()}),
        ))
        .ok(201, "the developer", r("Developer"))
        .err(&[E::InvalidRequest, E::WeakPassword])
        .err(&[E::Conflict])
        .err(&[E::Busy])
        .store(),
        op("get", "/v1/admin/developers", "operator", "List developers")
            .auth(ADMIN)
            .query("email", string(), "only the developer with this e-mail")
            .paged()
            .ok(200, "a page of developers", page(r("Developer")))
            .store(),
        op(
            "get",
            "/v1/admin/developers/{id}",
            "operator",
            "A developer",
        )
        .auth(ADMIN)
        .ok(200, "the developer", r("Developer"))
        .not_found()
        .store(),
        op(
            "post",
            "/v1/admin/developers/{id}/suspend",
            "operator",
            "Suspend a developer",
        )
        .auth(ADMIN)
        .ok(200, "the developer", r("Developer"))
        .not_found()
        .store(),
        op(
            "post",
            "/v1/admin/developers/{id}/unsuspend",
            "operator",
            "Lift a developer's suspension",
        )
        .auth(ADMIN)
        .ok(200, "the developer", r("Developer"))
        .not_found()
        .store(),
        op(
            "post",
            "/v1/admin/enterprises",
            "operator",
            "Create an enterprise for a developer",
        )
        .auth(ADMIN)
        .json_body(input(
            &["name", "owner_developer_id"],
            json!({"name": string(), "owner_developer_id": string()}),
        ))
        .ok(201, "the enterprise", r("Enterprise"))
        .err(&[E::InvalidRequest])
        .err(&[E::Conflict])
        .not_found()
        .store(),
        op(
            "post",
            "/v1/admin/enterprises/{id}/suspend",
            "operator",
            "Suspend an enterprise",
        )
        .auth(ADMIN)
        .ok(200, "the enterprise", r("Enterprise"))
        .not_found()
        .store(),
        op(
            "post",
            "/v1/admin/enterprises/{id}/unsuspend",
            "operator",
            "Lift an enterprise's suspension",
        )
        .auth(ADMIN)
        .ok(200, "the enterprise", r("Enterprise"))
        .not_found()
        .store(),
    ]
}

/// The schemas of the described operations (those the derived groups name are theirs).
pub(super) fn schemas() -> Map<String, Value> {
    let webhook = json!({"webhook_id": string(), "url": string(), "products": array(string()),
        "events": array(string()), "disabled": boolean(),
        "created_by": {"type": "string", "description": "the access key that created it"},
        "created_at": millis()});
    let webhook_keys = [
        "webhook_id",
        "url",
        "products",
        "events",
        "disabled",
        "created_by",
        "created_at",
        "secret",
    ];
    let mut created_webhook = webhook.clone();
    created_webhook["secret"] = json!({"type": "string",
        "description": "`rwhs_` and 64 hex digits: the HMAC key of the signatures; never shown again"});
    let developer = json!({"developer_id": string(), "email": string(), "active": boolean(),
        "suspended": boolean(), "totp_enabled": boolean(), "created_at": millis()});
    let developer_keys = [
        "developer_id",
        "email",
        "active",
        "suspended",
        "totp_enabled",
        "created_at",
    ];
    let mut developer_me = developer.clone();
    developer_me["enterprises"] = array(r("Enterprise"));
    let mut me_keys = developer_keys.to_vec();
    me_keys.push("enterprises");
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
        ("Developer", object(&developer_keys, developer)),
        ("DeveloperMe", object(&me_keys, developer_me)),
        (
            "Enterprise",
            object(
                &["enterprise_id", "name", "suspended", "role", "created_at"],
                json!({
            "enterprise_id": string(), "name": string(), "suspended": boolean(),
            "role": {"type": ["string", "null"], "enum": ["owner", "admin", "observer", null],
                "description": "the caller's role (null for the operator)"},
            "created_at": millis()}),
            ),
        ),
        (
            "NewAccessKey",
            input(
                &["products", "scopes", "allow_ips"],
                json!({
            "products": {"type": "array", "items": string(), "minItems": 1, "maxItems": 100,
                "description": "product keys of the enterprise"},
            "scopes": {"type": "array", "items": one_of(&["read", "control", "metrics"]), "minItems": 1,
                "description": "`control` does not include `read`"},
            "allow_ips": {"type": "array", "items": string(), "minItems": 1, "maxItems": 32,
                "description": "networks in CIDR notation (IPv4 or IPv6; a bare address is one host)"},
            "expires_at": {"type": ["integer", "null"], "description": "unix ms in the future; none: never"},
            "sensitive_points": {"type": "array", "items": string(),
                "description": "sensitive data points of the key's products that the key may see"}}),
            ),
        ),
        (
            "CreatedKey",
            object(
                &["key_id", "secret"],
                json!({"key_id": string(),
            "secret": {"type": "string", "description": "`ras_` and 64 hex digits; never shown again"}}),
            ),
        ),
        (
            "AccessKey",
            object(
                &[
                    "key_id",
                    "enterprise_id",
                    "products",
                    "scopes",
                    "allow_ips",
                    "sensitive_points",
                    "disabled",
                    "expires_at",
                    "previous_valid_until",
                    "created_by",
                    "created_at",
                ],
                json!({"key_id": string(), "enterprise_id": string(), "products": array(string()),
            "scopes": array(one_of(&["read", "control", "metrics"])), "allow_ips": array(string()),
            "sensitive_points": array(string()), "disabled": boolean(),
            "expires_at": nullable("integer"),
            "previous_valid_until": {"type": ["integer", "null"],
                "description": "while a rotated-out secret still works: until when (unix ms)"},
            "created_by": string(), "created_at": millis()}),
            ),
        ),
        ("Webhook", object(&webhook_keys[..7], webhook.clone())),
        ("CreatedWebhook", object(&webhook_keys, created_webhook)),
        (
            "DeadLetter",
            object(
                &[
                    "id",
                    "webhook_id",
                    "delivery_id",
                    "product_key",
                    "did",
                    "event_type",
                    "ts",
                    "data",
                    "attempts",
                    "last_status",
                    "last_error",
                    "failed_at",
                ],
                json!({"id": int(), "webhook_id": string(),
                    "delivery_id": {"type": "integer", "description": "the delivery id the event last had"},
                    "product_key": string(), "did": string(), "event_type": string(), "ts": millis(),
                    "data": {"type": "object"}, "attempts": int(),
                    "last_status": {"type": ["integer", "null"], "description": "the endpoint's last HTTP status; null when it never answered"},
                    "last_error": string(), "failed_at": millis()}),
            ),
        ),
        (
            "Member",
            object(
                &["developer_id", "email", "role", "created_at"],
                json!({
            "developer_id": string(), "email": string(),
            "role": one_of(&["owner", "admin", "observer"]), "created_at": millis()}),
            ),
        ),
        (
            "Invite",
            object(
                &[
                    "invite_id",
                    "enterprise_id",
                    "enterprise_name",
                    "email",
                    "role",
                    "invited_by",
                    "created_at",
                ],
                json!({"invite_id": string(), "enterprise_id": string(), "enterprise_name": string(),
                "email": string(), "role": one_of(&["owner", "admin", "observer"]),
                "invited_by": string(), "created_at": millis()}),
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
