//! Access-key management for enterprise owners and admins (and the operator):
//! `/v1/enterprises/{id}/keys` create, list, delete, disable, enable, rotate.
//!
//! Who may manage an enterprise's keys is `rampart_core::access::tenancy`'s decision; key checks are
//! `rampart_core::access::access_keys`'s. This module only maps them to HTTP.

use crate::extract::{client_ip, Body, Manager};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json};
use rampart_core::access::access_keys::{NewAccessKey, DEFAULT_OVERLAP_SECS};
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/enterprises/{id}/keys", post(create_key).get(list_keys))
        .described("/v1/enterprises/{id}/keys/{key_id}", delete(delete_key))
        .described(
            "/v1/enterprises/{id}/keys/{key_id}/disable",
            post(disable_key),
        )
        .described(
            "/v1/enterprises/{id}/keys/{key_id}/enable",
            post(enable_key),
        )
        .described(
            "/v1/enterprises/{id}/keys/{key_id}/rotate",
            post(rotate_key),
        )
}

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
            .map_err(|e| Error::new(crate::error::ErrorCode::InvalidJson, e.to_string()))?
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
