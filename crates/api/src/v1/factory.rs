//! Factory credentials and the factory line's own routes: an owner gives a production line a
//! credential with a device budget and an expiry; the line signs `POST /v1/factory/batches` with
//! it to issue identities, and a batch can be revoked (by that credential or an owner). The rules
//! are `rampart_core::device::factory`'s.

use super::parse_pk;
use super::products::{BatchBody, FactoryBatch, API_MAX_BATCH};
use crate::extract::{client_ip, Body, FactoryKey, Manager};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::access_keys::SCHEME;
use rampart_core::device::factory::{
    BatchRevoker, FactoryCredentialView, NewFactoryCredential, MAX_CREDENTIAL_DEVICES,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create_credential, list_credentials))
        .routes(routes!(revoke_credential))
        .routes(routes!(issue_batch))
        .routes(routes!(revoke_batch))
}

/// A new factory credential.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Shenzhen line 2", "max_devices": 50000,
    "expires_at": 1798761600000_i64}))]
pub(crate) struct NewCredentialBody {
    /// 1-100 characters
    name: String,
    /// the most identities it may ever issue
    #[schema(minimum = 1, maximum = 10000000)]
    max_devices: u32,
    /// unix milliseconds, in the future and within a year
    #[schema(value_type = super::schemas::Millis)]
    expires_at: i64,
}

/// A factory credential (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"credential_id": "rfc_0a1b2c3d4e5f6g7h8i9j", "product_key": "7prwteo8zuo71n9u",
    "name": "Shenzhen line 2", "max_devices": 50000, "issued": 1200,
    "expires_at": 1798761600000_i64, "created_at": 1765000000000_i64, "revoked_at": null}))]
pub(crate) struct Credential {
    credential_id: String,
    product_key: String,
    name: String,
    max_devices: i64,
    /// identities issued so far
    issued: i64,
    #[schema(value_type = super::schemas::Millis)]
    expires_at: i64,
    #[schema(value_type = super::schemas::Millis)]
    created_at: i64,
    #[schema(value_type = Option<super::schemas::Millis>)]
    revoked_at: Option<i64>,
}

impl From<FactoryCredentialView> for Credential {
    fn from(v: FactoryCredentialView) -> Self {
        Credential {
            credential_id: v.credential_id,
            product_key: v.product_key,
            name: v.name,
            max_devices: v.max_devices,
            issued: v.issued,
            expires_at: v.expires_at,
            created_at: v.created_at,
            revoked_at: v.revoked_at,
        }
    }
}

/// A new credential and its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedCredential {
    #[serde(flatten)]
    credential: Credential,
    /// the HMAC key of the line's signed requests (docs/api.md, "Factory credentials")
    secret: String,
}

/// A product's factory credentials.
#[derive(Serialize, ToSchema)]
pub(crate) struct CredentialList {
    data: Vec<Credential>,
}

/// What revoking a batch did.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"batch_id": "k2m9qz", "revoked": 40, "registered": 60}))]
pub(crate) struct BatchRevoked {
    batch_id: String,
    /// identities removed: they can never register
    #[schema(minimum = 0)]
    revoked: u64,
    /// identities of the batch already registered as devices (left as they are)
    #[schema(minimum = 0)]
    registered: u64,
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Conflict, Internal);
crate::errors!(ListErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(RevokeErrors: Unauthorized, Forbidden, NotFound, Conflict, Internal);
crate::errors!(SignedErrors: InvalidAuthorization, StaleTimestamp, SignatureMismatch,
    NonceReused, KeyDisabled, KeyExpired, InvalidJson, PayloadTooLarge, InvalidRequest,
    NotFound, Conflict, Internal);
crate::errors!(BatchRevokeErrors: Unauthorized, InvalidAuthorization, StaleTimestamp,
    SignatureMismatch, NonceReused, KeyDisabled, KeyExpired, PayloadTooLarge, Forbidden,
    NotFound, Conflict, Internal);

#[utoipa::path(post, path = "/v1/products/{product_key}/factory-credentials", tag = "products",
    summary = "Give a factory line a credential",
    description = "A credential with which a production line issues device identities over the \
        API (`POST /v1/factory/batches`), at most `max_devices` in all, until `expires_at`. The \
        secret is shown once. Owners only; audited (`factory.credential_create`).",
    request_body = NewCredentialBody,
    responses((status = 201, description = "the credential and its secret", body = CreatedCredential),
        CreateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn create_credential(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
    Body(b): Body<NewCredentialBody>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let req = NewFactoryCredential {
        name: b.name,
        max_devices: b.max_devices.min(MAX_CREDENTIAL_DEVICES.saturating_add(1)),
        expires_at: b.expires_at,
    };
    let c = s
        .core
        .create_factory_credential(&m.caller(), pk.as_str(), req, client_ip(&addr))
        .await?;
    let body = CreatedCredential {
        credential: c.view.into(),
        secret: c.secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/products/{product_key}/factory-credentials", tag = "products",
    summary = "A product's factory credentials",
    responses((status = 200, description = "the credentials, oldest first", body = CredentialList),
        ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_credentials(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Json<CredentialList>, Error> {
    let pk = parse_pk(&pk)?;
    let list = s
        .core
        .list_factory_credentials(&m.caller(), pk.as_str())
        .await?;
    Ok(Json(CredentialList {
        data: list.into_iter().map(Credential::from).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/factory-credentials/{credential_id}/revoke",
    tag = "products", summary = "Revoke a factory credential",
    description = "Its signed requests are refused from now on (`KEY_DISABLED`); the batches it \
        issued stay valid unless revoked themselves. 409 when revoked already. Owners only; \
        audited (`factory.credential_revoke`).",
    responses((status = 200, description = "the credential", body = Credential), RevokeErrors),
    security(("admin" = []), ("developer" = [])))]
async fn revoke_credential(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((pk, credential_id)): Path<(String, String)>,
) -> Result<Json<Credential>, Error> {
    let pk = parse_pk(&pk)?;
    let v = s
        .core
        .revoke_factory_credential(&m.caller(), pk.as_str(), &credential_id, client_ip(&addr))
        .await?;
    Ok(Json(v.into()))
}

#[utoipa::path(post, path = "/v1/factory/batches", tag = "factory",
    summary = "Issue a batch of device identities (factory line)",
    description = "Signed with a factory credential (`Authorization: RAMPART-HMAC-SHA256 \
        key_id=<credential_id>, ts=..., nonce=..., signature=...`, as access keys sign; \
        docs/api.md, \"Factory credentials\"). Issues `count` identities of the credential's \
        product; 409 when that would pass the credential's `max_devices`. The device secrets are \
        shown once. Audited (`factory.issue`, actor `factory:<credential_id>`).",
    request_body = BatchBody,
    responses((status = 201, description = "the batch; the device secrets are shown once",
        body = FactoryBatch), SignedErrors),
    security(("factory_credential" = [])))]
async fn issue_batch(State(s): State<AppState>, k: FactoryKey) -> Result<Response, Error> {
    let b: BatchBody = k.json()?;
    if b.count == 0 || b.count > API_MAX_BATCH {
        return Err(Error::invalid(format!("count must be 1..={API_MAX_BATCH}")));
    }
    let (batch_id, ids) = s.core.factory_issue_signed(&k.session, b.count).await?;
    let batch = FactoryBatch::issued(batch_id, &ids);
    Ok((StatusCode::CREATED, Json(batch)).into_response())
}

#[utoipa::path(post, path = "/v1/factory/batches/{batch_id}/revoke", tag = "factory",
    summary = "Revoke a batch",
    description = "Every identity of the batch not registered yet is removed and can never \
        register; devices already registered from it are left as they are. Signed by the factory \
        credential that issued the batch, or called by an owner of its product. 409 when revoked \
        already. Audited (`factory.batch_revoke`).",
    responses((status = 200, description = "what was revoked", body = BatchRevoked),
        BatchRevokeErrors),
    security(("factory_credential" = []), ("admin" = []), ("developer" = [])))]
async fn revoke_batch(
    State(s): State<AppState>,
    Path(batch_id): Path<String>,
    req: Request,
) -> Result<Response, Response> {
    let signed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SCHEME));
    let ip = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.ip().to_string());
    let by = if signed {
        BatchRevoker::Factory(FactoryKey::from_request(req, &s).await?.session)
    } else {
        let (mut parts, _) = req.into_parts();
        let m = Manager::from_request_parts(&mut parts, &s)
            .await
            .map_err(IntoResponse::into_response)?;
        BatchRevoker::Caller(m.caller())
    };
    let r = s
        .core
        .revoke_factory_batch(&by, &batch_id, ip)
        .await
        .map_err(|e| Error::from(e).into_response())?;
    Ok(Json(BatchRevoked {
        batch_id: r.batch_id,
        revoked: r.revoked,
        registered: r.registered,
    })
    .into_response())
}
