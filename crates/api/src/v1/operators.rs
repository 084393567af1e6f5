//! The operator's account administration under `/v1/admin`: create, list, read, suspend and
//! unsuspend developers; create, suspend and unsuspend enterprises. Admin token only. Each
//! handler's `#[utoipa::path]` and answer types make its part of the OpenAPI document.
//!
//! Suspension's effects (sessions ended, keys refused) are `rampart_core`'s; nothing here
//! decides them.

use super::schemas::{DeveloperView, EnterpriseView, Page, PageParams, Sorted};
use super::PageQuery;
use crate::extract::{client_ip, Admin, Body, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::developers::SignUp;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(admin_create_developer, admin_list_developers))
        .routes(routes!(admin_get_developer))
        .routes(routes!(admin_suspend_developer))
        .routes(routes!(admin_unsuspend_developer))
        .routes(routes!(admin_create_enterprise))
        .routes(routes!(admin_suspend_enterprise))
        .routes(routes!(admin_unsuspend_enterprise))
        .merge(super::admin_tokens::routes())
}

crate::errors!(CreateDeveloperErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, WeakPassword, Conflict, Busy, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(OneErrors: Unauthorized, NotFound, Internal);
crate::errors!(CreateEnterpriseErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, Conflict, NotFound, Internal);

// ---- operator ----

#[utoipa::path(post, path = "/v1/admin/developers", tag = "operator",
    summary = "Create an active developer account", request_body = SignUp,
    responses((status = 201, description = "the developer", body = DeveloperView),
        CreateDeveloperErrors),
    security(("admin" = [])))]
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
    Ok((StatusCode::CREATED, Json(DeveloperView::from(v))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeveloperQuery {
    email: Option<String>,
    page: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/admin/developers", tag = "operator", summary = "List developers",
    params(("email" = Option<String>, Query, description = "only the developer with this e-mail"),
        PageParams),
    responses((status = 200, description = "a page of developers", body = Page<DeveloperView>),
        ListErrors),
    security(("admin" = [])))]
async fn admin_list_developers(
    State(s): State<AppState>,
    _: Admin,
    Q(q): Q<DeveloperQuery>,
) -> Result<Sorted<Page<DeveloperView>>, Error> {
    let (page, limit) = PageQuery::of(q.page, q.limit).resolve()?;
    let (rows, total) = s
        .core
        .list_developers(q.email.as_deref(), (page - 1) * limit, limit)
        .await?;
    let rows = rows.into_iter().map(DeveloperView::from).collect();
    Ok(Sorted(Page::of(rows, page, limit, total)))
}

#[utoipa::path(get, path = "/v1/admin/developers/{id}", tag = "operator", summary = "A developer",
    responses((status = 200, description = "the developer", body = DeveloperView), OneErrors),
    security(("admin" = [])))]
async fn admin_get_developer(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<DeveloperView>, Error> {
    Ok(Json(DeveloperView::from(s.core.developer_view(&id).await?)))
}

#[utoipa::path(post, path = "/v1/admin/developers/{id}/suspend", tag = "operator",
    summary = "Suspend a developer",
    responses((status = 200, description = "the developer", body = DeveloperView), OneErrors),
    security(("admin" = [])))]
async fn admin_suspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<DeveloperView>, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(DeveloperView::from(v)))
}

#[utoipa::path(post, path = "/v1/admin/developers/{id}/unsuspend", tag = "operator",
    summary = "Lift a developer's suspension",
    responses((status = 200, description = "the developer", body = DeveloperView), OneErrors),
    security(("admin" = [])))]
async fn admin_unsuspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<DeveloperView>, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(DeveloperView::from(v)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Maker Ltd", "owner_developer_id": "dev_8f3k2q"}))]
pub(crate) struct AdminNewEnterprise {
    name: String,
    owner_developer_id: String,
}

#[utoipa::path(post, path = "/v1/admin/enterprises", tag = "operator",
    summary = "Create an enterprise for a developer", request_body = AdminNewEnterprise,
    responses((status = 201, description = "the enterprise", body = EnterpriseView),
        CreateEnterpriseErrors),
    security(("admin" = [])))]
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
    Ok((StatusCode::CREATED, Json(EnterpriseView::from(v))).into_response())
}

#[utoipa::path(post, path = "/v1/admin/enterprises/{id}/suspend", tag = "operator",
    summary = "Suspend an enterprise",
    responses((status = 200, description = "the enterprise", body = EnterpriseView), OneErrors),
    security(("admin" = [])))]
async fn admin_suspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(EnterpriseView::from(v)))
}

#[utoipa::path(post, path = "/v1/admin/enterprises/{id}/unsuspend", tag = "operator",
    summary = "Lift an enterprise's suspension",
    responses((status = 200, description = "the enterprise", body = EnterpriseView), OneErrors),
    security(("admin" = [])))]
async fn admin_unsuspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(EnterpriseView::from(v)))
}
