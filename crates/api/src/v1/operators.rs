//! The operator's account administration under `/v1/admin`: create, list, read, suspend and
//! unsuspend developers; create, suspend and unsuspend enterprises; the live events of every
//! device (`GET /v1/admin/events`, the live push's messages for the operator); named admin tokens
//! (`admin_tokens`). Admin token only. Each handler's `#[utoipa::path]` and answer types make its
//! part of the OpenAPI document.
//!
//! Suspension's effects (sessions ended, keys refused) are `rampart_core`'s; nothing here
//! decides them.

use super::schemas::{DeveloperView, EnterpriseView, Page, PageParams, Sorted};
use super::PageQuery;
use crate::extract::{client_ip, Admin, Body, Q};
use crate::openapi::ApiRouter;
use crate::push::WsToken;
use crate::{AppState, ClientAddr, Error};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::device::bus::DeviceEvent;
use rampart_core::secret::Secret;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::broadcast;
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
        .routes(routes!(admin_events))
        .merge(super::admin_tokens::routes())
}

crate::errors!(CreateDeveloperErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, WeakPassword, Conflict, Busy, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(OneErrors: Unauthorized, NotFound, Internal);
crate::errors!(AdminEventsErrors: Unauthorized, UpgradeRequired, Internal);
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
    Admin(actor): Admin,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_developer(&actor, &b.email, b.password, client_ip(&addr))
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
    Admin(actor): Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<DeveloperView>, Error> {
    let v = s
        .core
        .set_developer_suspended(&actor, &id, true, client_ip(&addr))
        .await?;
    Ok(Json(DeveloperView::from(v)))
}

#[utoipa::path(post, path = "/v1/admin/developers/{id}/unsuspend", tag = "operator",
    summary = "Lift a developer's suspension",
    responses((status = 200, description = "the developer", body = DeveloperView), OneErrors),
    security(("admin" = [])))]
async fn admin_unsuspend_developer(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<DeveloperView>, Error> {
    let v = s
        .core
        .set_developer_suspended(&actor, &id, false, client_ip(&addr))
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
    Admin(actor): Admin,
    addr: Addr,
    Body(b): Body<AdminNewEnterprise>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_enterprise(
            &actor,
            &b.name,
            Some(&b.owner_developer_id),
            client_ip(&addr),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(EnterpriseView::from(v))).into_response())
}

#[utoipa::path(post, path = "/v1/admin/enterprises/{id}/suspend", tag = "operator",
    summary = "Suspend an enterprise",
    responses((status = 200, description = "the enterprise", body = EnterpriseView), OneErrors),
    security(("admin" = [])))]
async fn admin_suspend_enterprise(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&actor, &id, true, client_ip(&addr))
        .await?;
    Ok(Json(EnterpriseView::from(v)))
}

#[utoipa::path(post, path = "/v1/admin/enterprises/{id}/unsuspend", tag = "operator",
    summary = "Lift an enterprise's suspension",
    responses((status = 200, description = "the enterprise", body = EnterpriseView), OneErrors),
    security(("admin" = [])))]
async fn admin_unsuspend_enterprise(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&actor, &id, false, client_ip(&addr))
        .await?;
    Ok(Json(EnterpriseView::from(v)))
}

/// How often a live event stream checks that its admin token still works (a revoked named token
/// closes the stream within this).
const TOKEN_RECHECK: Duration = Duration::from_secs(5);

/// Close code for a revoked token, as the live push uses it.
const CLOSE_UNAUTHORIZED: u16 = 4401;

#[utoipa::path(get, path = "/v1/admin/events", tag = "operator",
    summary = "Live events of every device (WebSocket)",
    description = "Upgrades to a WebSocket streaming one `LiveEvent` JSON text message per event \
        (presence, reports, acks, registrations) of every device, as the end users' live push \
        does for their devices. A consumer that falls behind loses events. Closes with 4401 once \
        the admin token is revoked. A browser, which cannot set the header on a WebSocket, \
        passes the token as `?access_token=`.",
    responses((status = 101, description = "switching to the WebSocket; messages are `LiveEvent`"),
        AdminEventsErrors),
    security(("admin" = []), ("user_query" = [])))]
async fn admin_events(
    State(s): State<AppState>,
    WsToken(token): WsToken,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    if !s.core.check_admin_token(token.expose()).await? {
        return Err(Error::unauthorized());
    }
    let upgrade = upgrade.map_err(|r| {
        Error::new(
            crate::error::ErrorCode::UpgradeRequired,
            format!("a WebSocket upgrade is required: {}", r.body_text()),
        )
    })?;
    // Subscribed before the 101, so every event after the client sees the upgrade reaches it.
    let events = s.core.bus().subscribe_events();
    let core = s.core.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(e) = stream_events(socket, core, token, events).await {
                tracing::debug!(error = %e, "admin event stream ended");
            }
        }))
}

async fn stream_events(
    mut socket: WebSocket,
    core: rampart_core::Core,
    token: Secret,
    mut events: broadcast::Receiver<DeviceEvent>,
) -> Result<(), String> {
    let mut recheck = tokio::time::interval(TOKEN_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                if !core.check_admin_token(token.expose()).await.unwrap_or(false) {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: CLOSE_UNAUTHORIZED,
                            reason: "token revoked".into(),
                        })))
                        .await;
                    return Ok(());
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                // Pings are answered by the library; client data is ignored.
                Some(Ok(_)) => {}
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if let Some((_, body)) = crate::push::event_json(&ev) {
                        socket
                            .send(Message::Text(body.to_string().into()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "admin event stream fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
