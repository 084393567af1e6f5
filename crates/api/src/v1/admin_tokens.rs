//! Named admin tokens under `/v1/admin/tokens`: create (the token is answered once), list (never
//! a hash, only a hint of the last characters) and revoke. Admin only; every creation and
//! revocation is audited by `rampart_core::identity::admin_tokens`, which decides everything.

use super::schemas::Millis;
use crate::extract::{client_ip, Admin, Body};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::identity::admin_tokens::{AdminTokenInfo, Minted};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create_admin_token, list_admin_tokens))
        .routes(routes!(revoke_admin_token))
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, Conflict, Internal);
crate::errors!(ListErrors: Unauthorized, Internal);
crate::errors!(RevokeErrors: Unauthorized, NotFound, Internal);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "deploy pipeline"}))]
pub(crate) struct NewAdminToken {
    /// what the token is for: 1-64 characters
    name: String,
}

/// A named admin token as listed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "atk_3f9a0c1d2e4b5a69", "name": "deploy pipeline", "hint": "9f0e",
    "created_by": "admin:bootstrap", "created_at": 1765000000000_i64}))]
pub(crate) struct AdminTokenView {
    id: String,
    name: String,
    /// the token's last four characters
    hint: String,
    /// who made it: `admin:bootstrap`, `admin:` and a named token's id, or `cli:local`
    created_by: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<AdminTokenInfo> for AdminTokenView {
    fn from(i: AdminTokenInfo) -> AdminTokenView {
        AdminTokenView {
            id: i.id,
            name: i.name,
            hint: i.hint,
            created_by: i.created_by,
            created_at: i.created_at,
        }
    }
}

/// A new admin token: the only answer that holds it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "atk_3f9a0c1d2e4b5a69", "name": "deploy pipeline", "hint": "9f0e",
    "created_by": "admin:bootstrap", "created_at": 1765000000000_i64,
    "token": "rpa_0c1d2e4b5a693f9a0c1d2e4b5a693f9a0c1d2e4b9f0e"}))]
pub(crate) struct CreatedAdminToken {
    #[serde(flatten)]
    info: AdminTokenView,
    /// the token, shown once; only its SHA-256 is kept
    token: String,
}

/// Every named admin token: `{"data": [...]}` (few enough that there are no pages).
#[derive(Serialize, ToSchema)]
pub(crate) struct AdminTokenList {
    data: Vec<AdminTokenView>,
}

#[utoipa::path(post, path = "/v1/admin/tokens", tag = "operator",
    summary = "Create a named admin token", request_body = NewAdminToken,
    description = "The answer holds the token once; only its SHA-256 is kept. The token has the \
        bootstrap admin token's power until it is revoked. Audited (`admin_token.create`).",
    responses((status = 201, description = "the token", body = CreatedAdminToken), CreateErrors),
    security(("admin" = [])))]
async fn create_admin_token(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Body(b): Body<NewAdminToken>,
) -> Result<Response, Error> {
    let (info, token) = s
        .core
        .create_admin_token(&b.name, &actor, Minted::Created, client_ip(&addr))
        .await?;
    let body = CreatedAdminToken {
        info: info.into(),
        token: token.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/admin/tokens", tag = "operator",
    summary = "List the named admin tokens",
    description = "The bootstrap token is not listed. No token or hash is ever answered, only the \
        last four characters.",
    responses((status = 200, description = "every named admin token, oldest first",
        body = AdminTokenList), ListErrors),
    security(("admin" = [])))]
async fn list_admin_tokens(
    State(s): State<AppState>,
    _: Admin,
) -> Result<Json<AdminTokenList>, Error> {
    let data = s
        .core
        .list_admin_tokens()
        .await?
        .into_iter()
        .map(AdminTokenView::from)
        .collect();
    Ok(Json(AdminTokenList { data }))
}

#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "operator",
    summary = "Revoke a named admin token",
    description = "The token is refused from now on. Audited (`admin_token.revoke`).",
    responses((status = 200, description = "the revoked token", body = AdminTokenView),
        RevokeErrors),
    security(("admin" = [])))]
async fn revoke_admin_token(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<AdminTokenView>, Error> {
    let info = s
        .core
        .revoke_admin_token(&id, &actor, client_ip(&addr))
        .await?;
    Ok(Json(info.into()))
}
