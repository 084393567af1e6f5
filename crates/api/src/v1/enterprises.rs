//! Enterprises as their developers see them: create and list them, members and their roles,
//! invitations sent and received.
//!
//! Who may invite, change a role or remove a member is `rampart_core::access::tenancy`'s decision.

use crate::extract::{client_ip, Body, Developer, Manager};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json};
use rampart_core::access::tenancy::EntRole;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/developers/me/invites", get(my_invites))
        .described(
            "/v1/developers/me/invites/{invite_id}",
            delete(decline_invite),
        )
        .described(
            "/v1/developers/me/invites/{invite_id}/accept",
            post(accept_invite),
        )
        .described(
            "/v1/enterprises",
            post(create_enterprise).get(my_enterprises),
        )
        .described("/v1/enterprises/{id}", get(get_enterprise))
        .described("/v1/enterprises/{id}/members", get(members))
        .described(
            "/v1/enterprises/{id}/members/{developer_id}",
            put(set_role).delete(remove_member),
        )
        .described("/v1/enterprises/{id}/invites", post(invite))
}

// ---- enterprises ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnterprise {
    name: String,
}

/// A developer creates an enterprise and becomes its owner; the operator creates one with no
/// member yet (and invites its owners).
async fn create_enterprise(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Body(b): Body<NewEnterprise>,
) -> Result<Response, Error> {
    let e = match m {
        Manager::Developer(d) => {
            s.core
                .create_enterprise(&d, &b.name, client_ip(&addr))
                .await?
        }
        Manager::Operator => {
            s.core
                .operator_create_enterprise(&b.name, None, client_ip(&addr))
                .await?
        }
    };
    Ok((StatusCode::CREATED, Json(e)).into_response())
}

async fn my_enterprises(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Json<Value>, Error> {
    let v = s.core.my_enterprises(&d).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

async fn get_enterprise(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.enterprise_view(&m.caller(), &id).await?).into_response())
}

async fn members(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let v = s.core.enterprise_members(&m.caller(), &id).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteBody {
    email: String,
    role: EntRole,
}

async fn invite(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(id): Path<String>,
    Body(b): Body<InviteBody>,
) -> Result<Response, Error> {
    let invite_id = s
        .core
        .invite_member(&m.caller(), &id, &b.email, b.role, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"invite_id": invite_id}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    role: EntRole,
}

async fn set_role(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
    Body(b): Body<RoleBody>,
) -> Result<Json<Value>, Error> {
    s.core
        .set_member_role(&m.caller(), &id, &dev, b.role, client_ip(&addr))
        .await?;
    Ok(Json(json!({"developer_id": dev, "role": b.role})))
}

async fn remove_member(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    s.core
        .remove_member(&m.caller(), &id, &dev, client_ip(&addr))
        .await?;
    Ok(Json(json!({"developer_id": dev, "status": "removed"})))
}

async fn my_invites(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Json<Value>, Error> {
    let v = s.core.my_invites(&d).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

async fn accept_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let e = s.core.accept_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(e).into_response())
}

async fn decline_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    s.core.decline_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(json!({"invite_id": id, "status": "declined"})))
}
