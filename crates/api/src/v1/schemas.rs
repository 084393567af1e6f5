//! Schemas the `/v1` groups share: paging, time, and the product model's types that live in
//! `rampart-core` and `rampart-proto` (described here, beside the API, since those crates know
//! nothing of OpenAPI). A type described by hand carries an example made by serialising the real
//! type with every field set, so a field added there and not here fails the example test.
//!
//! Descriptions only: nothing here parses or answers a request.

use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use utoipa::openapi::{RefOr, Schema};

/// A schema written as JSON; it must be one utoipa's model of OpenAPI 3.1 reads.
fn from_json(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).expect("a valid schema")
}

/// Declares a schema-only type `$ty`, named `$name` in the document, described by `$schema`.
macro_rules! described {
    ($(#[$m:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$m])*
        pub(crate) struct $ty;
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                from_json($schema)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

described!(
    /// Unix time in milliseconds.
    Millis,
    "Millis",
    json!({"type": "integer", "format": "int64", "description": "Unix time in milliseconds"})
);

described!(
    /// `rampart_core::device::products::IdentityModes`.
    IdentityModes,
    "IdentityModes",
    json!({"type": "object", "additionalProperties": false, "properties": {
        "dynamic_registration": {"type": "boolean", "default": false},
        "allowlist": {"type": "boolean", "default": false},
        "static_password": {"type": "boolean", "default": false, "description":
            "devices may also connect over TLS with username = did and password = device secret"},
        "x509": {"type": "boolean", "default": false, "description":
            "devices may connect over TLS with a client certificate chained to one of the product's CAs"},
        "x509_jit": {"type": "boolean", "default": false, "description":
            "a certificate device is registered at its first connection (needs x509)"},
        "allow_rsa1024": {"type": "boolean", "default": false, "description":
            "RSA-1024 device certificates are accepted, each connection audited as weak (needs x509)"},
        "secure_session": {"type": "boolean", "default": false, "description":
            "devices may connect through the encrypted session layer on the plain-TCP listener"}},
        "example": real(rampart_core::device::products::IdentityModes {
            dynamic_registration: true,
            allowlist: true,
            ..Default::default()
        })})
);

described!(
    /// `rampart_proto::model::DataPoint`: one data point of a product's model.
    DataPoint,
    "DataPoint",
    json!({"type": "object", "required": ["name", "type"],
        "additionalProperties": false, "properties": {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["bool", "enum", "int", "float", "string", "binary"]},
        "min": {"type": "number"}, "max": {"type": "number"}, "step": {"type": "number"},
        "values": {"type": "array", "items": {"type": "string"}},
        "max_len": {"type": "integer", "minimum": 0},
        "writable": {"type": "boolean", "default": false},
        "sensitivity": {"type": "string", "enum": ["public", "internal", "sensitive"],
            "default": "public"},
        "class": {"type": "string", "enum": ["alert", "fault"],
            "description": "a bool point that signals a condition: the operator event stream announces it when a report raises (`true`) or clears (`false`) it"}},
        "example": real(full_data_point())})
);

described!(
    /// `rampart_core::device::registry::RegisterRequest`: a device's signed registration.
    RegisterRequestSchema,
    "RegisterRequest",
    json!({"oneOf": [{"type": "object", "additionalProperties": false,
        "required": ["product_key", "hardware_id", "ts", "nonce", "mode", "sign"],
        "properties": {
        "product_key": {"type": "string"}, "hardware_id": {"type": "string"},
        "ts": {"$ref": "#/components/schemas/Millis"}, "nonce": {"type": "string"},
        "mode": {"type": "string", "enum": ["product", "device"]},
        "sign": {"type": "string", "description": "HMAC-SHA256, hex; see docs/protocol.md"},
        "device_sign": {"type": "string", "description": "for hardware already registered: the HMAC-SHA256 (hex) of the same string as `sign`, keyed by the device's current secret"}}},
        {"type": "object", "additionalProperties": false, "required": ["mode", "product_key"],
        "description": "a certificate device: the client certificate of the TLS connection names it (its subject CN is the hardware id); the answer is its did alone",
        "properties": {"mode": {"type": "string", "enum": ["x509"]}, "product_key": {"type": "string"}}}]})
);

described!(
    /// `rampart_core::device::runtime::CommandRequest`: a command, `set` values or an `action`.
    CommandRequestSchema,
    "CommandRequest",
    json!({"type": "object", "additionalProperties": false,
        "description": "exactly one of `set` or `action`",
        "properties": {
        "set": {"type": "object", "description": "data point name -> value", "additionalProperties": true},
        "action": {"type": "string", "enum": ["reboot", "factory_reset", "wipe"]},
        "desired": {"type": "boolean", "default": false,
            "description": "with `set`: also merge the values into the device's desired state (`PUT /v1/devices/{did}/desired`)"}},
        "example": {"set": {"power": true}}})
);

described!(
    /// The body of `PUT /v1/devices/{did}/desired`: changes merged into the desired state.
    DesiredBody,
    "DesiredBody",
    json!({"type": "object", "additionalProperties": true,
        "description": "data point name -> desired value; `null` removes the point from the desired state",
        "example": {"power": true, "level": null}})
);

described!(
    /// `rampart_proto::command::Ack`: a device's acknowledgement of a command.
    Ack,
    "Ack",
    json!({"type": "object", "required": ["id", "status"], "properties": {
        "id": {"type": "string"}, "status": {"type": "string", "enum": ["ok", "error"]},
        "message": {"type": "string"}},
        "example": real(rampart_proto::command::Ack {
            id: "c1".into(),
            status: rampart_proto::command::AckStatus::Error,
            message: Some("busy".into()),
        })})
);

described!(
    /// A passthrough message's body: any bytes, sent as they are.
    RawBytes,
    "RawBytes",
    json!({"type": "string", "contentMediaType": "application/octet-stream",
        "description": "any bytes, at most 32 KiB"})
);

described!(
    /// `rampart_core::device::runtime::HistoryPoint`: one reported value.
    HistoryPoint,
    "HistoryPoint",
    json!({"type": "object", "required": ["ts", "point", "value"], "properties": {
        "ts": {"$ref": "#/components/schemas/Millis"}, "point": {"type": "string"},
        "value": {"type": ["boolean", "number", "string"],
            "description": "typed by the data point (binary: base64)"}},
        "example": real(rampart_core::device::runtime::HistoryPoint {
            ts: 1765000000000,
            point: "power".into(),
            value: json!(true),
        })})
);

/// A device's registration: its id, and the secrets it is given.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"did": "d_0001", "device_secret": "7d3e...", "passcode": "483920"}))]
pub(crate) struct Registered {
    did: String,
    /// absent at a first registration in mode `device` (the factory secret stays the device secret)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    device_secret: Option<String>,
    /// only at a first registration and at a re-provisioning
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    passcode: Option<String>,
}

impl Registered {
    /// A certificate device's answer: its id alone (the certificate is its credential).
    pub(crate) fn did_only(did: String) -> Registered {
        Registered {
            did,
            device_secret: None,
            passcode: None,
        }
    }
}

impl From<rampart_core::device::registry::Registered> for Registered {
    fn from(r: rampart_core::device::registry::Registered) -> Registered {
        Registered {
            did: r.did,
            device_secret: r.device_secret,
            passcode: r.passcode,
        }
    }
}

/// A device in a list.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"did": "d_0001", "product_key": "pk_1a2b3c", "hardware_id": "AA:BB:CC:DD:EE:01",
    "online": false, "last_seen": null, "created_at": 1765000000000_i64}))]
pub(crate) struct DeviceSummary {
    pub(crate) did: String,
    pub(crate) product_key: String,
    pub(crate) hardware_id: String,
    pub(crate) online: bool,
    #[schema(required = true)]
    pub(crate) last_seen: Option<i64>,
    #[schema(value_type = Millis)]
    pub(crate) created_at: i64,
}

/// A device and its latest reported values.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"did": "d_0001", "product_key": "pk_1a2b3c", "hardware_id": "AA:BB:CC:DD:EE:01",
    "online": true, "last_seen": 1765000000000_i64, "created_at": 1765000000000_i64,
    "state": {"power": true}}))]
pub(crate) struct DeviceView {
    did: String,
    product_key: String,
    hardware_id: String,
    online: bool,
    #[schema(required = true)]
    last_seen: Option<i64>,
    #[schema(value_type = Millis)]
    created_at: i64,
    /// data point name -> value
    #[schema(value_type = Object)]
    state: Value,
    /// desired state, reported state and their delta (`GET /v1/devices/{did}` only)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) shadow: Option<Shadow>,
    /// the client certificate the device last connected with (certificate devices only)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) certificate: Option<DeviceCertificate>,
    /// the public key the device was pre-registered with (`GET /v1/devices/{did}` only)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) public_key: Option<DevicePublicKey>,
}

/// The client certificate a device last connected with, so its expiry is seen before it bites.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "not_after": 1893456000000_i64}))]
pub(crate) struct DeviceCertificate {
    /// SHA-256 of the certificate's DER, lowercase hex
    pub(crate) sha256: String,
    #[schema(value_type = Millis)]
    pub(crate) not_after: i64,
}

/// A device's public key, by algorithm: `ed25519` is the standard base64 of its 32 bytes.
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ed25519": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}))]
pub(crate) struct DevicePublicKey {
    /// standard base64 of the 32-byte Ed25519 public key
    #[schema(min_length = 44, max_length = 44)]
    pub(crate) ed25519: String,
}

/// A device's shadow: what it is asked to be (`desired`, whose `version` grows at every change;
/// 0 before the first), what it reported (`reported`, its state) and the desired points whose
/// reported value differs (`delta`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"desired": {"power": true, "level": 3}, "reported": {"power": false,
    "level": 3}, "delta": {"power": true}, "version": 2}))]
pub(crate) struct Shadow {
    /// data point name -> desired value
    #[schema(value_type = Object)]
    desired: Value,
    /// data point name -> reported value
    #[schema(value_type = Object)]
    reported: Value,
    /// data point name -> desired value, for the points whose reported value differs
    #[schema(value_type = Object)]
    delta: Value,
    #[schema(minimum = 0)]
    version: i64,
}

impl From<rampart_core::device::shadow::ShadowView> for Shadow {
    fn from(s: rampart_core::device::shadow::ShadowView) -> Shadow {
        Shadow {
            desired: Value::Object(s.desired),
            reported: Value::Object(s.reported),
            delta: Value::Object(s.delta),
            version: s.version,
        }
    }
}

/// A command's outcome: `queued` (waiting in a parked persistent session), `sent` (handed to the
/// device's session), `ok` or `error` (the device's acknowledgement; `detail` is its message),
/// `expired` (no acknowledgement before `expires_at`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "8f1c2a9b0d3e4f56", "did": "d_0001", "status": "error",
    "created_at": 1765000000000_i64, "updated_at": 1765000000500_i64,
    "expires_at": 1765003600000_i64, "detail": "busy"}))]
pub(crate) struct CommandStatus {
    id: String,
    did: String,
    status: CommandState,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(value_type = Millis)]
    updated_at: i64,
    #[schema(value_type = Millis)]
    expires_at: i64,
    /// the message of the device's acknowledgement, when it gave one
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    detail: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CommandState {
    Queued,
    Sent,
    Ok,
    Error,
    Expired,
}

impl From<rampart_core::device::shadow::CommandStatus> for CommandStatus {
    fn from(c: rampart_core::device::shadow::CommandStatus) -> CommandStatus {
        CommandStatus {
            id: c.id,
            did: c.did,
            status: match c.status.as_str() {
                "queued" => CommandState::Queued,
                "sent" => CommandState::Sent,
                "ok" => CommandState::Ok,
                "error" => CommandState::Error,
                _ => CommandState::Expired,
            },
            created_at: c.created_at,
            updated_at: c.updated_at,
            expires_at: c.expires_at,
            detail: c.detail,
        }
    }
}

impl From<rampart_core::device::runtime::DeviceView> for DeviceView {
    fn from(d: rampart_core::device::runtime::DeviceView) -> DeviceView {
        DeviceView {
            did: d.did,
            product_key: d.product_key,
            hardware_id: d.hardware_id,
            online: d.online,
            last_seen: d.last_seen,
            created_at: d.created_at,
            state: d.state,
            shadow: None,
            certificate: None,
            public_key: None,
        }
    }
}

/// A device's history: `{"data": [...], "meta": {"limit", "count"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryPage {
    #[schema(value_type = Vec<HistoryPoint>)]
    pub(crate) data: Vec<rampart_core::device::runtime::HistoryPoint>,
    pub(crate) meta: HistoryMeta,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryMeta {
    pub(crate) limit: i64,
    /// how many values `data` holds
    #[schema(value_type = i64)]
    pub(crate) count: usize,
}

/// A data point with every field set (not a valid model point: the example only shows them).
fn full_data_point() -> rampart_proto::model::DataPoint {
    use rampart_proto::model::{DataPoint, PointClass, PointType, Sensitivity};
    DataPoint {
        name: "overheat".into(),
        kind: PointType::Bool,
        min: Some(0.0),
        max: Some(1.0),
        step: Some(1.0),
        values: Some(vec!["on".into()]),
        max_len: Some(8),
        writable: true,
        sensitivity: Sensitivity::Internal,
        class: Some(PointClass::Alert),
    }
}

/// The JSON of a real value.
fn real(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("serialisable")
}

/// `page` and `limit` of a paged list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only described: `super::Paging` reads them
pub(crate) struct PageParams {
    /// page, from 1
    #[param(minimum = 1, maximum = 1_000_000, default = 1)]
    page: Option<i64>,
    /// items per page
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

/// A page of a list: `{"data": [...], "meta": {"page", "limit", "total"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) data: Vec<T>,
    pub(crate) meta: PageMeta,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PageMeta {
    pub(crate) page: i64,
    pub(crate) limit: i64,
    pub(crate) total: i64,
}

impl<T> Page<T> {
    pub(crate) fn of(data: Vec<T>, page: i64, limit: i64, total: i64) -> Page<T> {
        Page {
            data,
            meta: PageMeta { page, limit, total },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoParams;

    /// The page limits the document states are those `Paging` enforces.
    #[test]
    fn page_params_state_the_enforced_limits() {
        let params: Vec<Value> = PageParams::into_params(|| None)
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(params[0]["name"], "page");
        assert_eq!(
            params[0]["schema"]["maximum"],
            json!(super::super::MAX_PAGE)
        );
        assert_eq!(params[1]["name"], "limit");
        assert_eq!(params[1]["schema"]["maximum"], json!(200));
    }

    /// The typed history and page answers are sent (through `Sorted`) exactly as the `json!`
    /// answers they replaced.
    #[test]
    fn history_and_pages_are_sent_as_before() {
        use axum::response::IntoResponse;
        let point = || rampart_core::device::runtime::HistoryPoint {
            ts: 1765000000000,
            point: "power".into(),
            value: json!(true),
        };
        let sent = |r: axum::response::Response| async move {
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let page = HistoryPage {
            data: vec![point(), point()],
            meta: HistoryMeta {
                limit: 100,
                count: 2,
            },
        };
        let was = json!({"data": [point(), point()], "meta": {"limit": 100, "count": 2}});
        assert_eq!(
            rt.block_on(sent(Sorted(page).into_response())),
            was.to_string()
        );
        let was = json!({"data": [point()], "meta": {"page": 2, "limit": 1, "total": 3}});
        let now = super::super::page_of(vec![point()], 2, 1, 3).into_response();
        assert_eq!(rt.block_on(sent(now)), was.to_string());
    }
}

/// Declares `$ty`, the answer `{"status": $value}`, named `$name` in the document.
macro_rules! status_answer {
    ($(#[$m:meta])* $ty:ident, $name:literal, $value:literal) => {
        $(#[$m])*
        pub(crate) struct $ty;
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("status", $value)?;
                m.end()
            }
        }
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                from_json(json!({"type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": [$value]}},
                    "example": {"status": $value}}))
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

status_answer!(
    /// An account waits for its activation code.
    ActivationPending,
    "ActivationPending",
    "activation_pending"
);
status_answer!(
    /// The account is active.
    Active,
    "Active",
    "active"
);
status_answer!(
    /// Accepted, whether or not the account exists.
    Accepted,
    "Accepted",
    "accepted"
);
status_answer!(
    /// The password is changed.
    PasswordChanged,
    "PasswordChanged",
    "changed"
);

/// How many sessions (logins) a logout ended.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"sessions_ended": 1}))]
pub(crate) struct SessionsEnded {
    #[schema(value_type = i64)]
    pub(crate) sessions_ended: u64,
}

/// `rampart_core::identity::accounts::TokenPair`: an access and a refresh token.
#[derive(utoipa::ToSchema)]
#[schema(as = TokenPair, example = token_pair)]
#[allow(dead_code)] // only described: the handlers answer the core's `TokenPair`
pub(crate) struct TokenPairSchema {
    access_token: String,
    refresh_token: String,
    /// seconds
    expires_in: i64,
}

fn token_pair() -> rampart_core::identity::accounts::TokenPair {
    use rampart_core::secret::Secret;
    rampart_core::identity::accounts::TokenPair {
        access_token: Secret::new("rat_3f9a...".into()),
        refresh_token: Secret::new("rrt_81c2...".into()),
        expires_in: 3600,
    }
}

/// `rampart_core::audit::AuditEntryView`: one audit entry.
#[derive(utoipa::ToSchema)]
#[schema(as = AuditEntry, example = json!({"id": 42, "ts": 1765000000000_i64,
    "actor_kind": "access_key", "actor_id": "rak_1", "tenant": "ent_1", "action": "device.command",
    "target": "device:d_0001", "source_ip": "203.0.113.7", "outcome": "sent", "detail": null,
    "hash": "b1946ac92492d2347c6235b4d2611184"}))]
#[allow(dead_code)] // only described: the handlers answer the core's view
pub(crate) struct AuditEntrySchema {
    id: i64,
    #[schema(value_type = Millis)]
    ts: i64,
    actor_kind: String,
    actor_id: String,
    #[schema(required = true)]
    tenant: Option<String>,
    action: String,
    #[schema(required = true)]
    target: Option<String>,
    #[schema(required = true)]
    source_ip: Option<String>,
    outcome: String,
    #[schema(required = true)]
    detail: Option<String>,
    /// the entry's hash in the audit chain (null before migration 0007)
    #[schema(required = true)]
    hash: Option<String>,
}

/// Declares `$ty`, a string that is one of `$values`, named `$name` in the document.
macro_rules! string_enum {
    ($(#[$m:meta])* $ty:ident, $name:literal, [$($value:literal),+ $(,)?]) => {
        $(#[$m])*
        #[allow(dead_code)] // only described
        pub(crate) struct $ty;
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                serde_json::from_value(serde_json::json!({"type": "string", "enum": [$($value),+]}))
                    .expect("a valid schema")
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use string_enum;

/// A typed answer sent with its keys sorted, as the answers built as `serde_json::Value` always
/// were (lists, and the developer's own view): the same bytes on the wire as before they were typed.
pub(crate) struct Sorted<T>(pub(crate) T);

impl<T: Serialize> axum::response::IntoResponse for Sorted<T> {
    fn into_response(self) -> axum::response::Response {
        match serde_json::to_value(&self.0) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "an answer that does not serialise");
                crate::Error::new(crate::error::ErrorCode::Internal, "internal error")
                    .into_response()
            }
        }
    }
}

/// A whole list (not paged): `{"data": [...], "meta": {"total"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Listed<T> {
    pub(crate) data: Vec<T>,
    pub(crate) meta: ListedMeta,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListedMeta {
    #[schema(value_type = i64)]
    pub(crate) total: usize,
}

impl<T> Listed<T> {
    pub(crate) fn of(data: Vec<T>) -> Listed<T> {
        let total = data.len();
        Listed {
            data,
            meta: ListedMeta { total },
        }
    }
}

/// A developer's role in an enterprise (`rampart_core::access::tenancy::EntRole`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // only described: the handlers read and answer `EntRole`
pub(crate) enum EnterpriseRole {
    Owner,
    Admin,
    Observer,
}

/// An enterprise as one of its members (or the operator) sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Enterprise, example = json!({"enterprise_id": "ent_4k2m9x", "name": "Maker Ltd",
    "suspended": false, "role": "owner", "created_at": 1765000000000_i64}))]
pub(crate) struct EnterpriseView {
    enterprise_id: String,
    name: String,
    suspended: bool,
    /// the caller's role (null for the operator)
    #[schema(value_type = Option<EnterpriseRole>, required = true)]
    role: Option<rampart_core::access::tenancy::EntRole>,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<rampart_core::access::enterprises::EnterpriseView> for EnterpriseView {
    fn from(e: rampart_core::access::enterprises::EnterpriseView) -> EnterpriseView {
        EnterpriseView {
            enterprise_id: e.enterprise_id,
            name: e.name,
            suspended: e.suspended,
            role: e.role,
            created_at: e.created_at,
        }
    }
}

/// A developer account as the developer and the operator see it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Developer, example = json!({"developer_id": "dev_8f3k2q", "email": "dev@maker.example",
    "active": true, "suspended": false, "totp_enabled": false, "created_at": 1765000000000_i64}))]
pub(crate) struct DeveloperView {
    pub(crate) developer_id: String,
    pub(crate) email: String,
    pub(crate) active: bool,
    pub(crate) suspended: bool,
    pub(crate) totp_enabled: bool,
    #[schema(value_type = Millis)]
    pub(crate) created_at: i64,
}

impl From<rampart_core::identity::developers::DeveloperView> for DeveloperView {
    fn from(d: rampart_core::identity::developers::DeveloperView) -> DeveloperView {
        DeveloperView {
            developer_id: d.developer_id,
            email: d.email,
            active: d.active,
            suspended: d.suspended,
            totp_enabled: d.totp_enabled,
            created_at: d.created_at,
        }
    }
}

/// The `status` of an answer to a deletion: always `deleted`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Deleted {
    Deleted,
}

/// The error answers of an operation called with a signed enterprise request: the refusals of
/// its signature (401), a body over 1 MiB (413) and the store (500) (docs/enterprise-api.md,
/// "Errors of signed requests"), with the operation's own codes listed after the type's name:
/// `signed_errors!(ReadErrors: Forbidden, NotFound)`.
#[macro_export]
#[doc(hidden)]
macro_rules! signed_errors {
    ($name:ident: $($code:ident),* $(,)?) => {
        $crate::errors!($name: InvalidAuthorization, StaleTimestamp, SignatureMismatch,
            KeyDisabled, KeyExpired, EnterpriseSuspended, IpNotAllowed, NonceReused,
            PayloadTooLarge, Internal $(, $code)*);
    };
}

/// Asserts that `mine`, the API's type for an answer, is sent exactly as `core`, the core's value
/// it replaced, was: same keys, same order, same values.
#[cfg(test)]
pub(crate) fn assert_sent_as<C: Serialize, M: Serialize>(core: &C, mine: &M) {
    assert_eq!(
        serde_json::to_string(mine).unwrap(),
        serde_json::to_string(core).unwrap()
    );
}

#[cfg(test)]
mod part_b_tests {
    use super::*;
    use rampart_core::access::tenancy::EntRole;
    use utoipa::PartialSchema;

    #[test]
    fn the_shared_views_are_sent_as_the_core_s() {
        let ent = |role| rampart_core::access::enterprises::EnterpriseView {
            enterprise_id: "ent_1".into(),
            name: "Maker Ltd".into(),
            suspended: true,
            role,
            created_at: 1765000000000,
        };
        for role in [Some(EntRole::Observer), None] {
            assert_sent_as(&ent(role), &EnterpriseView::from(ent(role)));
        }
        let dev = || rampart_core::identity::developers::DeveloperView {
            developer_id: "dev_1".into(),
            email: "dev@maker.example".into(),
            active: true,
            suspended: false,
            totp_enabled: true,
            created_at: 1765000000000,
        };
        assert_sent_as(&dev(), &DeveloperView::from(dev()));
    }

    /// A page or a whole list sent through `Sorted` is the JSON `page_of` and `json!` built.
    #[test]
    fn sorted_lists_keep_their_bytes() {
        let dev = || rampart_core::identity::developers::DeveloperView {
            developer_id: "dev_1".into(),
            email: "dev@maker.example".into(),
            active: true,
            suspended: false,
            totp_enabled: true,
            created_at: 1765000000000,
        };
        let body = |r: axum::response::Response| async {
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use axum::response::IntoResponse;
            let was = super::super::page_of(vec![dev(), dev()], 2, 2, 5).into_response();
            let rows: Vec<DeveloperView> = vec![dev().into(), dev().into()];
            let now = Sorted(Page::of(rows, 2, 2, 5)).into_response();
            assert_eq!(body(now).await, body(was).await);
            let was = axum::Json(json!({"data": [dev()], "meta": {"total": 1}})).into_response();
            let now = Sorted(Listed::<DeveloperView>::of(vec![dev().into()]));
            assert_eq!(body(now.into_response()).await, body(was).await);
        });
    }

    /// Every documented role is one the core reads, and the core has no other.
    #[test]
    fn the_documented_roles_are_the_core_s() {
        let schema = serde_json::to_value(EnterpriseRole::schema()).unwrap();
        let names: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let core = [EntRole::Owner, EntRole::Admin, EntRole::Observer];
        assert_eq!(names, core.map(EntRole::as_str));
        for n in names {
            assert_eq!(EntRole::parse(n).map(EntRole::as_str), Some(n));
        }
    }
}
