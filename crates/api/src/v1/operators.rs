//! The operator's account administration under `/v1/admin`: create, list, read, suspend and
//! unsuspend developers; create, suspend and unsuspend enterprises. Admin token only.
//!
//! Suspension's effects (sessions ended, keys refused) are `rampart_core`'s; nothing here
//! decides them.

use super::{page_of, PageQuery};
use crate::extract::{client_ip, Admin, Body, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;

use super::developers::SignUp;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described(
            "/v1/admin/developers",
            post(admin_create_developer).get(admin_list_developers),
        )
        .described("/v1/admin/developers/{id}", get(admin_get_developer))
        .described(
            "/v1/admin/developers/{id}/suspend",
            post(admin_suspend_developer),
        )
        .described(
            "/v1/admin/developers/{id}/unsuspend",
            post(admin_unsuspend_developer),
        )
        .described("/v1/admin/enterprises", post(admin_create_enterprise))
        .described(
            "/v1/admin/enterprises/{id}/suspend",
            post(admin_suspend_enterprise),
        )
        .described(
            "/v1/admin/enterprises/{id}/unsuspend",
            post(admin_unsuspend_enterprise),
        )
}

// ---- operator ----

async fn admin_create_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_developer(&b.email, b.password, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeveloperQuery {
    email: Option<String>,
    page: Option<i64>,
    limit: Option<i64>,
}

async fn admin_list_developers(
    State(s): State<AppState>,
    _: Admin,
    Q(q): Q<DeveloperQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = PageQuery::of(q.page, q.limit).resolve()?;
    let (rows, total) = s
        .core
        .list_developers(q.email.as_deref(), (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn admin_get_developer(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.developer_view(&id).await?).into_response())
}

async fn admin_suspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

async fn admin_unsuspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminNewEnterprise {
    name: String,
    owner_developer_id: String,
}

async fn admin_create_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Body(b): Body<AdminNewEnterprise>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_enterprise(&b.name, Some(&b.owner_developer_id), client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn admin_suspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

async fn admin_unsuspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}
