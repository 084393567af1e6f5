//! The enterprise API: access-key management for enterprise owners and admins
//! (`/v1/enterprises/{id}/keys`), and the endpoints that business systems call with signed
//! requests (`/v1/enterprise/...`), authenticated by the [`EnterpriseKey`] extractor.
//!
//! No access rule lives here: key checks, tenant isolation and scopes are
//! `rampart_core::access::access_keys`'s; this module only maps them to HTTP.

use crate::developers::Manager;
use crate::routes::{
    client_ip, command_answer, history_page, page_of, parse_did, Body, PageQuery, Paging, Q,
};
use crate::{AppState, ClientAddr, Error};
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use rampart_core::access::access_keys::{
    KeyAuthError, KeySession, NewAccessKey, Scope, SignedRequest, DEFAULT_OVERLAP_SECS, MAX_BODY,
    SCHEME,
};
use rampart_core::audit::action;
use rampart_core::audit::AuditFilter;
use rampart_core::device::runtime::CommandRequest;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/enterprises/{id}/keys", post(create_key).get(list_keys))
        .route("/v1/enterprises/{id}/keys/{key_id}", delete(delete_key))
        .route(
            "/v1/enterprises/{id}/keys/{key_id}/disable",
            post(disable_key),
        )
        .route(
            "/v1/enterprises/{id}/keys/{key_id}/enable",
            post(enable_key),
        )
        .route(
            "/v1/enterprises/{id}/keys/{key_id}/rotate",
            post(rotate_key),
        )
        .route("/v1/enterprises/{id}/audit", get(enterprise_audit))
        .route("/v1/enterprise/devices", get(devices))
        .route("/v1/enterprise/devices/{did}", get(device))
        .route("/v1/enterprise/devices/{did}/history", get(history))
        .route("/v1/enterprise/devices/{did}/commands", post(command))
        .route("/v1/enterprise/audit", get(audit))
}

// ---- the signed-request extractor ----

/// A request signed with an enterprise access key. Extracting it reads the body (at most
/// [`MAX_BODY`]) to check the signature; the body is handed on in `body`. It must be the last
/// extractor of a handler, and handlers parse their query through [`EnterpriseKey::query`] so
/// that nothing about the request is judged before its signature.
pub(crate) struct EnterpriseKey {
    pub(crate) key: KeySession,
    pub(crate) body: Bytes,
    uri: Uri,
}

impl EnterpriseKey {
    pub(crate) fn query<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(Query::<T>::try_from_uri(&self.uri)?.0)
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(StatusCode::BAD_REQUEST, "INVALID_JSON", e.to_string()))
    }
}

/// A refusal of a signed request: 401 with the scheme in `WWW-Authenticate`.
fn refusal(e: KeyAuthError) -> Response {
    let err = match e {
        KeyAuthError::Internal(e) => Error::from(e),
        e => Error::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
    };
    let mut resp = err.into_response();
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(SCHEME));
    }
    resp
}

impl FromRequest<AppState> for EnterpriseKey {
    type Rejection = Response;
    async fn from_request(req: Request, state: &AppState) -> Result<EnterpriseKey, Response> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "a signed request's body may be at most 1 MiB",
            )
            .into_response()
        })?;
        let signed = SignedRequest {
            authorization: parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            body: &body,
            peer: parts.extensions.get::<ClientAddr>().map(|a| a.0.ip()),
        };
        let key = state
            .core
            .authenticate_access_key(&signed)
            .await
            .map_err(refusal)?;
        // Counted only once the signature holds: nobody spends another key's quota.
        let quota = state
            .core
            .limits()
            .check_access_key(&key.key_id, rampart_core::now_ms())
            .map_err(|r| Error::from(r).into_response())?;
        if let Some(q) = quota {
            crate::limits::RateSlot::report(&parts.extensions, q);
        }
        Ok(EnterpriseKey {
            key,
            body,
            uri: parts.uri,
        })
    }
}

// ---- key management (admin token, enterprise owners and admins) ----

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
    Ok((StatusCode::CREATED, Json(k)).into_response())
}

async fn list_keys(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let keys = s.core.list_access_keys(&m.caller(), &id).await?;
    let n = keys.len();
    Ok(Json(json!({"data": keys, "meta": {"total": n}})))
}

async fn delete_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    s.core
        .delete_access_key(&m.caller(), &id, &key_id, client_ip(&addr))
        .await?;
    Ok(Json(json!({"key_id": key_id, "status": "deleted"})))
}

async fn set_disabled(
    s: AppState,
    m: Manager,
    addr: Addr,
    id: String,
    key_id: String,
    on: bool,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_access_key_disabled(&m.caller(), &id, &key_id, on, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

async fn disable_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Response, Error> {
    set_disabled(s, m, addr, id, key_id, true).await
}

async fn enable_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Response, Error> {
    set_disabled(s, m, addr, id, key_id, false).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    overlap_secs: Option<i64>,
}

/// The body is optional: `{"overlap_secs": n}` (default one hour).
async fn rotate_key(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Error> {
    let r: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::new(StatusCode::BAD_REQUEST, "INVALID_JSON", e.to_string()))?
    };
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
    Ok(Json(k).into_response())
}

// ---- audit queries ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor_kind: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    page: Option<i64>,
    limit: Option<i64>,
}

impl AuditQuery {
    /// The filter, page and limit.
    fn resolve(self) -> Result<(AuditFilter, i64, i64), Error> {
        let (page, limit) = PageQuery::of(self.page, self.limit).resolve()?;
        let f = AuditFilter {
            actor_kind: self.actor_kind.unwrap_or_default(),
            actor_id: self.actor.unwrap_or_default(),
            action: self.action.unwrap_or_default(),
            target: self.target.unwrap_or_default(),
            from: self.from.unwrap_or(0),
            to: self.to,
        };
        Ok((f, page, limit))
    }
}

/// The enterprise's audit entries for its owners (and the operator), like `GET
/// /v1/enterprise/audit` for a key.
async fn enterprise_audit(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<Value>, Error> {
    let (f, page, limit) = q.resolve()?;
    s.core
        .authorize_enterprise(
            &m.caller(),
            &id,
            rampart_core::access::tenancy::Act::Members,
        )
        .await?;
    let (rows, total) = s
        .core
        .tenant_audit(&id, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn audit(State(s): State<AppState>, k: EnterpriseKey) -> Result<Json<Value>, Error> {
    let (f, page, limit) = k.query::<AuditQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .key_audit(&k.key, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

// ---- devices through a key ----

async fn devices(State(s): State<AppState>, k: EnterpriseKey) -> Result<Json<Value>, Error> {
    let q: Paging = k.query()?;
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .key_devices(
            &k.key,
            q.product_key.as_deref().filter(|p| !p.is_empty()),
            (page - 1) * limit,
            limit,
        )
        .await?;
    Ok(page_of(rows, page, limit, total))
}

/// The device `did` and its product key, if the key may do `need` to it.
async fn key_device(
    s: &AppState,
    k: &EnterpriseKey,
    did: &str,
    need: Scope,
) -> Result<(rampart_proto::ids::Did, String), Error> {
    let did = parse_did(did)?;
    let pk = s
        .core
        .authorize_key_device(&k.key, did.as_str(), need)
        .await?;
    Ok((did, pk))
}

async fn device(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Read).await?;
    let v = s.core.key_device_view(&k.key, did.as_str()).await?;
    s.core
        .audit_key_access(
            &k.key,
            action::ENTERPRISE_DEVICE_READ,
            format!("device:{did}"),
        )
        .await;
    Ok(Json(v).into_response())
}

async fn history(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<Value>, Error> {
    let q = k.query()?;
    let (did, pk) = key_device(&s, &k, &did, Scope::Read).await?;
    let mut page = history_page(&s, did.as_str(), &q).await?;
    // Sensitive points the key does not name are left out.
    let hidden = s.core.key_hidden_points(&k.key, &pk).await?;
    let count = match page.0["data"].as_array_mut() {
        Some(rows) => {
            rows.retain(|r| {
                !r["point"]
                    .as_str()
                    .is_some_and(|p| hidden.iter().any(|h| h == p))
            });
            rows.len()
        }
        None => 0,
    };
    page.0["meta"]["count"] = count.into();
    s.core
        .audit_key_access(
            &k.key,
            action::ENTERPRISE_DEVICE_HISTORY,
            format!("device:{did}"),
        )
        .await;
    Ok(page)
}

/// Validated and delivered like `POST /v1/devices/{did}/commands`; audited there
/// (`device.command`, actor the key, tenant its enterprise).
async fn command(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Control).await?;
    let req: CommandRequest = k.json()?;
    let outcome = s
        .core
        .send_command(
            did.as_str(),
            req,
            &k.key.actor(),
            Some(k.key.source_ip.clone()),
        )
        .await?;
    Ok(command_answer(outcome))
}
