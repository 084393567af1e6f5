//! Access-key management for enterprise owners and admins (and the operator):
//! `/v1/enterprises/{id}/keys` create, list, delete, disable, enable, rotate. Each handler's
//! `#[utoipa::path]` and answer types make its part of the OpenAPI document.
//!
//! Who may manage an enterprise's keys is `rampart_core::access::tenancy`'s decision; key checks are
//! `rampart_core::access::access_keys`'s. This module only maps them to HTTP.

use super::schemas::{Deleted, Listed, Millis, Sorted};
use crate::extract::{client_ip, Body, Manager, OptionalBody};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::access_keys::{NewAccessKey, DEFAULT_OVERLAP_SECS};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(delete_key))
        .routes(routes!(disable_key))
        .routes(routes!(enable_key))
        .routes(routes!(rotate_key))
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, Conflict, NotFound, Internal);
crate::errors!(KeyErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(RotateErrors: Unauthorized, InvalidJson, InvalidRequest, Forbidden, NotFound,
    Internal);

// ---- the bodies and answers ----

/// A new access key.
// The handler reads `rampart_core::access::access_keys::NewAccessKey`; a test holds the two
// together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewAccessKey, example = json!({"products": ["pk_1a2b3c"], "scopes": ["read", "control"],
    "allow_ips": ["203.0.113.0/24", "2001:db8::1"], "expires_at": 1796536000000_i64,
    "sensitive_points": ["location"]}))]
#[allow(dead_code)] // read only by the test that holds it to `NewAccessKey`
pub(crate) struct NewAccessKeyBody {
    /// product keys of the enterprise
    #[schema(min_items = 1, max_items = 100)]
    products: Vec<String>,
    /// `control` does not include `read`
    #[schema(min_items = 1)]
    scopes: Vec<KeyScope>,
    /// networks in CIDR notation (IPv4 or IPv6; a bare address is one host)
    #[schema(min_items = 1, max_items = 32)]
    allow_ips: Vec<String>,
    /// unix ms in the future; none: never
    #[serde(default)]
    expires_at: Option<i64>,
    /// sensitive data points of the key's products that the key may see
    #[serde(default)]
    sensitive_points: Vec<String>,
}

/// What a key may do with the devices it reaches (`rampart_core::access::access_keys::Scope`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // only described
pub(crate) enum KeyScope {
    Read,
    Control,
    Metrics,
}

/// A new key: its id and its secret, shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"key_id": "rak_3f9k2m7q",
    "secret": "ras_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"}))]
pub(crate) struct CreatedKey {
    key_id: String,
    /// `ras_` and 64 hex digits; never shown again
    secret: String,
}

impl From<rampart_core::access::access_keys::CreatedKey> for CreatedKey {
    fn from(k: rampart_core::access::access_keys::CreatedKey) -> CreatedKey {
        CreatedKey {
            key_id: k.key_id,
            secret: k.secret,
        }
    }
}

/// A key's new secret, shown once, and until when the one it replaces keeps working.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"key_id": "rak_3f9k2m7q",
    "secret": "ras_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "previous_valid_until": 1765003600000_i64}))]
pub(crate) struct RotatedKey {
    key_id: String,
    /// `ras_` and 64 hex digits; never shown again
    secret: String,
    /// until when the replaced secret keeps working (a rotation always sets it)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Millis, required = true)]
    previous_valid_until: Option<i64>,
}

impl From<rampart_core::access::access_keys::CreatedKey> for RotatedKey {
    fn from(k: rampart_core::access::access_keys::CreatedKey) -> RotatedKey {
        RotatedKey {
            key_id: k.key_id,
            secret: k.secret,
            previous_valid_until: k.previous_valid_until,
        }
    }
}

/// An access key as listed (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(as = AccessKey, example = json!({"key_id": "rak_3f9k2m7q", "enterprise_id": "ent_4k2m9x",
    "products": ["pk_1a2b3c"], "scopes": ["read"], "allow_ips": ["203.0.113.0/24"],
    "sensitive_points": [], "disabled": false, "expires_at": null, "previous_valid_until": null,
    "created_by": "developer:dev_8f3k2q", "created_at": 1765000000000_i64}))]
pub(crate) struct AccessKeyView {
    key_id: String,
    enterprise_id: String,
    products: Vec<String>,
    #[schema(value_type = Vec<KeyScope>)]
    scopes: Vec<rampart_core::access::access_keys::Scope>,
    allow_ips: Vec<String>,
    sensitive_points: Vec<String>,
    disabled: bool,
    #[schema(required = true)]
    expires_at: Option<i64>,
    /// while a rotated-out secret still works: until when (unix ms)
    #[schema(required = true)]
    previous_valid_until: Option<i64>,
    created_by: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<rampart_core::access::access_keys::AccessKeyView> for AccessKeyView {
    fn from(k: rampart_core::access::access_keys::AccessKeyView) -> AccessKeyView {
        AccessKeyView {
            key_id: k.key_id,
            enterprise_id: k.enterprise_id,
            products: k.products,
            scopes: k.scopes,
            allow_ips: k.allow_ips,
            sensitive_points: k.sensitive_points,
            disabled: k.disabled,
            expires_at: k.expires_at,
            previous_valid_until: k.previous_valid_until,
            created_by: k.created_by,
            created_at: k.created_at,
        }
    }
}

/// A key deleted.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"key_id": "rak_3f9k2m7q", "status": "deleted"}))]
pub(crate) struct KeyDeleted {
    key_id: String,
    status: Deleted,
}

// ---- the handlers ----

#[utoipa::path(post, path = "/v1/enterprises/{id}/keys", tag = "enterprises",
    summary = "Create an access key",
    description = "Audited (`access_key.create`). The secret is answered only here.",
    request_body = NewAccessKeyBody,
    responses((status = 201, description = "the key id and its secret, shown once",
        body = CreatedKey), CreateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn create_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(id): Path<String>,
    Body(b): Body<NewAccessKey>,
) -> Result<Response, Error> {
    let k = s
        .core
        .create_access_key(&m.caller(), &id, b, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey::from(k))).into_response())
}

#[utoipa::path(get, path = "/v1/enterprises/{id}/keys", tag = "enterprises",
    summary = "An enterprise's access keys (never a secret)",
    responses((status = 200, description = "the keys", body = Listed<AccessKeyView>), KeyErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_keys(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Sorted<Listed<AccessKeyView>>, Error> {
    let keys = s.core.list_access_keys(&m.caller(), &id).await?;
    let keys = keys.into_iter().map(AccessKeyView::from).collect();
    Ok(Sorted(Listed::of(keys)))
}

#[utoipa::path(delete, path = "/v1/enterprises/{id}/keys/{key_id}", tag = "enterprises",
    summary = "Delete an access key",
    description = "Audited (`access_key.delete`). The key stops working at once.",
    responses((status = 200, description = "deleted", body = KeyDeleted), KeyErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyDeleted>, Error> {
    s.core
        .delete_access_key(&m.caller(), &id, &key_id, client_ip(&addr))
        .await?;
    Ok(Json(KeyDeleted {
        key_id,
        status: Deleted::Deleted,
    }))
}

async fn set_disabled(
    s: AppState,
    m: Manager,
    addr: Addr,
    id: String,
    key_id: String,
    on: bool,
) -> Result<Json<AccessKeyView>, Error> {
    let v = s
        .core
        .set_access_key_disabled(&m.caller(), &id, &key_id, on, client_ip(&addr))
        .await?;
    Ok(Json(AccessKeyView::from(v)))
}

#[utoipa::path(post, path = "/v1/enterprises/{id}/keys/{key_id}/disable", tag = "enterprises",
    summary = "Disable an access key",
    description = "Audited (`access_key.disable`). Requests with it answer 401 `KEY_DISABLED`.",
    responses((status = 200, description = "the key, `disabled` true", body = AccessKeyView),
        KeyErrors),
    security(("admin" = []), ("developer" = [])))]
async fn disable_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<AccessKeyView>, Error> {
    set_disabled(s, m, addr, id, key_id, true).await
}

#[utoipa::path(post, path = "/v1/enterprises/{id}/keys/{key_id}/enable", tag = "enterprises",
    summary = "Enable a disabled access key", description = "Audited (`access_key.enable`).",
    responses((status = 200, description = "the key, `disabled` false", body = AccessKeyView),
        KeyErrors),
    security(("admin" = []), ("developer" = [])))]
async fn enable_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<AccessKeyView>, Error> {
    set_disabled(s, m, addr, id, key_id, false).await
}

/// The body of a rotation; the body may be left out.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RotateKey, example = json!({"overlap_secs": 3600}))]
struct Rotate {
    /// how long the replaced secret keeps working
    #[schema(value_type = i64, required = false, minimum = 0, maximum = 604800, default = 3600)]
    overlap_secs: Option<i64>,
}

#[utoipa::path(post, path = "/v1/enterprises/{id}/keys/{key_id}/rotate", tag = "enterprises",
    summary = "Give an access key a new secret",
    description = "Audited (`access_key.rotate`). The secret it replaces keeps working until \
        `previous_valid_until`; a rotation during an overlap ends the older overlap. The body may \
        be left out.",
    request_body(content = Option<Rotate>, description = "how long the replaced secret keeps working"),
    responses((status = 200, description = "the new secret, shown once", body = RotatedKey),
        RotateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn rotate_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
    OptionalBody(r): OptionalBody<Rotate>,
) -> Result<Json<RotatedKey>, Error> {
    let k = s
        .core
        .rotate_access_key(
            &m.caller(),
            &id,
            &key_id,
            r.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS),
            client_ip(&addr),
        )
        .await?;
    Ok(Json(RotatedKey::from(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::schemas::assert_sent_as;
    use utoipa::PartialSchema;

    /// The documented body is what the handler reads: its example, which names every field,
    /// parses as the core's `NewAccessKey`.
    #[test]
    fn the_documented_new_key_is_what_the_handler_reads() {
        let schema = serde_json::to_value(NewAccessKeyBody::schema()).unwrap();
        let example = schema["example"].clone();
        let names: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        for n in names {
            assert!(example.get(n).is_some(), "the example lacks {n}");
        }
        serde_json::from_value::<NewAccessKeyBody>(example.clone()).unwrap();
        let k: NewAccessKey = serde_json::from_value(example).unwrap();
        assert_eq!(k.scopes.len(), 2);
    }

    /// Every documented scope is one the core reads.
    #[test]
    fn the_documented_scopes_are_the_core_s() {
        let schema = serde_json::to_value(KeyScope::schema()).unwrap();
        let names = schema["enum"].as_array().unwrap();
        assert_eq!(names.len(), 3);
        for n in names {
            serde_json::from_value::<rampart_core::access::access_keys::Scope>(n.clone()).unwrap();
        }
    }

    /// Keys are sent as the core's values were: a new one without `previous_valid_until`, a
    /// rotated one with it.
    #[test]
    fn the_keys_are_sent_as_the_core_s() {
        use rampart_core::access::access_keys as core;
        let created = |until| core::CreatedKey {
            key_id: "rak_1".into(),
            secret: "ras_00".into(),
            previous_valid_until: until,
        };
        assert_sent_as(&created(None), &CreatedKey::from(created(None)));
        let until = Some(1765003600000);
        assert_sent_as(&created(until), &RotatedKey::from(created(until)));
        let view = || core::AccessKeyView {
            key_id: "rak_1".into(),
            enterprise_id: "ent_1".into(),
            products: vec!["pk_1".into()],
            scopes: vec![core::Scope::Read, core::Scope::Metrics],
            allow_ips: vec!["203.0.113.0/24".into()],
            sensitive_points: vec!["location".into()],
            disabled: true,
            expires_at: None,
            previous_valid_until: Some(1765003600000),
            created_by: "admin:bootstrap".into(),
            created_at: 1765000000000,
        };
        assert_sent_as(&view(), &AccessKeyView::from(view()));
    }

    /// A deleted key's answer is the JSON it replaced, byte for byte.
    #[test]
    fn the_deleted_answer_keeps_its_bytes() {
        let typed = KeyDeleted {
            key_id: "rak_1".into(),
            status: Deleted::Deleted,
        };
        let was = serde_json::json!({"key_id": "rak_1", "status": "deleted"});
        assert_eq!(serde_json::to_string(&typed).unwrap(), was.to_string());
    }

    /// The default overlap the document states is the one the handler applies.
    #[test]
    fn the_documented_overlap_default_is_the_applied_one() {
        let schema = serde_json::to_value(Rotate::schema()).unwrap();
        assert_eq!(
            schema["properties"]["overlap_secs"]["default"],
            serde_json::json!(DEFAULT_OVERLAP_SECS)
        );
    }
}
