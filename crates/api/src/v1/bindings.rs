//! Bindings and shares: a user binds a device (by passcode or bind token), lists and drops
//! bindings, shares a device with another user, and accepts or declines shares; the device's
//! passcode for its manager.
//!
//! Who may bind, share or unbind is `rampart_core::access::bindings`'s decision; this module only asks.

use super::{page_of, parse_did, PageQuery};
use crate::extract::{client_ip, Body, Manager, User, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use rampart_core::access::bindings::{BindProof, Role};
use rampart_core::audit::action;
use rampart_core::identity::accounts::Identity;
use rampart_core::secret::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/devices/{did}/passcode", get(passcode))
        .described("/v1/devices/{did}/bind-tokens", post(bind_token))
        .described(
            "/v1/devices/{did}/shares",
            post(create_share).get(device_shares),
        )
        .described("/v1/devices/{did}/shares/{share_id}", delete(revoke_share))
        .described("/v1/bindings", post(bind).get(crate::oauth::list_bindings))
        .described("/v1/bindings/{did}", delete(unbind))
        .described("/v1/shares", get(list_shares))
        .described("/v1/shares/{share_id}", delete(decline_share))
        .described("/v1/shares/{share_id}/accept", post(accept_share))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindBody {
    did: String,
    passcode: Option<Secret>,
    token: Option<Secret>,
}

pub(crate) async fn bind(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Body(b): Body<BindBody>,
) -> Result<Response, Error> {
    let proof = match (b.passcode, b.token) {
        (Some(p), None) => BindProof::Passcode(p),
        (None, Some(t)) => BindProof::Token(t),
        _ => return Err(Error::invalid("give exactly one of `passcode` or `token`")),
    };
    let did = parse_did(&b.did)?;
    let (role, new) = s
        .core
        .bind(&u, did.as_str(), proof, client_ip(&addr))
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"did": did.as_str(), "role": role}))).into_response())
}

pub(crate) async fn list_bindings(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_bindings(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

pub(crate) async fn unbind(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    s.core.unbind(&u, did.as_str(), client_ip(&addr)).await?;
    Ok(Json(json!({"did": did.as_str(), "status": "unbound"})))
}

pub(crate) async fn bind_token(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let t = s
        .core
        .create_bind_token(&u, did.as_str(), client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

pub(crate) async fn passcode(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    let caller = m.caller();
    s.core
        .authorize_device_for(
            &caller,
            did.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    let p = s.core.device_passcode(did.as_str()).await?;
    let mut ev =
        rampart_core::audit::AuditEvent::new(&caller.actor(), action::DEVICE_PASSCODE_READ, "ok")
            .target(format!("device:{}", did.as_str()));
    if let Some(ip) = client_ip(&addr) {
        ev = ev.source_ip(ip);
    }
    s.core.audit(ev).await;
    Ok(Json(json!({"did": did.as_str(), "passcode": p.expose()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareBody {
    user: String,
    role: Role,
}

pub(crate) async fn create_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
    Body(b): Body<ShareBody>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let who = Identity::parse_username(&b.user)?;
    let id = s
        .core
        .create_share(&u, did.as_str(), who, b.role, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"share_id": id}))).into_response())
}

pub(crate) async fn device_shares(
    State(s): State<AppState>,
    User(u): User,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    let rows = s.core.device_shares(&u, did.as_str()).await?;
    let n = rows.len();
    Ok(Json(json!({"data": rows, "meta": {"total": n}})))
}

pub(crate) async fn revoke_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path((did, id)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    s.core
        .revoke_share(&u, did.as_str(), &id, client_ip(&addr))
        .await?;
    Ok(Json(json!({"share_id": id, "status": "revoked"})))
}

pub(crate) async fn list_shares(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_shares(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

pub(crate) async fn accept_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s.core.accept_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(v).into_response())
}

pub(crate) async fn decline_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    s.core.decline_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(json!({"share_id": id, "status": "declined"})))
}
