//! The enterprise API's device endpoints, called by business systems with requests signed by
//! an access key: list devices, read one, its history, send it a command and look its status up. Each handler's
//! `#[utoipa::path]` and answer types make its part of the OpenAPI document.
//!
//! Tenant isolation and scopes are `rampart_core::access::access_keys`'s; this module only maps them to
//! HTTP.

use super::devices::{command_answer, command_status_of, history_page, CommandAccepted};
use super::schemas::{
    Ack, CommandRequestSchema, CommandStatus, DeviceView, HistoryPage, Page, PageParams, Sorted,
};
use super::{parse_did, Paging};
use crate::extract::EnterpriseKey;
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use rampart_core::access::access_keys::Scope;
use rampart_core::audit::action;
use rampart_core::device::runtime::CommandRequest;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(devices))
        .routes(routes!(device))
        .routes(routes!(history))
        .routes(routes!(command))
        .routes(routes!(command_status))
        .routes(routes!(send_raw))
}

// A device or product the key does not reach answers 404 like an unknown one; a key without the
// scope an endpoint needs answers 403.
crate::signed_errors!(ListErrors: InvalidRequest, Forbidden, NotFound);
crate::signed_errors!(ReadErrors: Forbidden, NotFound);
crate::signed_errors!(CommandErrors: InvalidJson, InvalidRequest, InvalidDatapoint, Forbidden,
    DeviceOffline, CommandTimeout, NotFound);
crate::signed_errors!(RawErrors: Forbidden, DeviceOffline, NotFound);

#[utoipa::path(get, path = "/v1/enterprise/devices", tag = "enterprise api",
    summary = "The devices of the key's products (scope `read`)",
    description = "Audited (`enterprise.device_list`). Sensitive points the key does not name are \
        left out of `state`.",
    params(("product_key" = Option<String>, Query,
            description = "only this product's devices (one the key names, else 404)"),
        PageParams),
    responses((status = 200, description = "a page of devices", body = Page<DeviceView>),
        ListErrors),
    security(("access_key" = [])))]
async fn devices(
    State(s): State<AppState>,
    k: EnterpriseKey,
) -> Result<Sorted<Page<DeviceView>>, Error> {
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
    let rows = rows.into_iter().map(DeviceView::from).collect();
    Ok(Sorted(Page::of(rows, page, limit, total)))
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

#[utoipa::path(get, path = "/v1/enterprise/devices/{did}", tag = "enterprise api",
    summary = "A device, its state and presence (scope `read`)",
    description = "Audited (`enterprise.device_read`). Sensitive points the key does not name are \
        left out of `state`.",
    responses((status = 200, description = "the device", body = DeviceView), ReadErrors),
    security(("access_key" = [])))]
async fn device(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<DeviceView>, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Read).await?;
    let v = s.core.key_device_view(&k.key, did.as_str()).await?;
    s.core
        .audit_key_access(
            &k.key,
            action::ENTERPRISE_DEVICE_READ,
            format!("device:{did}"),
        )
        .await;
    Ok(Json(DeviceView::from(v)))
}

/// The query of a device's history.
// `devices::HistoryQuery` reads it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only described
struct HistoryParams {
    /// only this data point
    point: Option<String>,
    /// from this time (unix ms)
    from: Option<i64>,
    /// up to this time (unix ms)
    to: Option<i64>,
    /// at most this many values
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/enterprise/devices/{did}/history", tag = "enterprise api",
    summary = "A device's reported values, newest first (scope `read`)",
    description = "Audited (`enterprise.device_history`). Sensitive points the key does not name \
        are left out.",
    params(HistoryParams),
    responses((status = 200, description = "the values", body = HistoryPage), ListErrors),
    security(("access_key" = [])))]
async fn history(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Sorted<HistoryPage>, Error> {
    let q = k.query()?;
    let (did, pk) = key_device(&s, &k, &did, Scope::Read).await?;
    let mut page = history_page(&s, did.as_str(), &q).await?;
    // Sensitive points the key does not name are left out.
    let hidden = s.core.key_hidden_points(&k.key, &pk).await?;
    let rows = &mut page.0.data;
    rows.retain(|r| !hidden.contains(&r.point));
    page.0.meta.count = rows.len();
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
#[utoipa::path(post, path = "/v1/enterprise/devices/{did}/commands", tag = "enterprise api",
    summary = "Send a command to a device (scope `control`)",
    description = "Validated and delivered like `POST /v1/devices/{did}/commands`; audited as \
        `device.command` with the key as actor. The body is read as signed: no `Content-Type` is \
        required.",
    request_body = CommandRequestSchema,
    responses((status = 200, description = "the device's acknowledgement", body = Ack),
        (status = 202, description = "queued in a parked persistent session, or (`desired` to a \
            device with no session) kept as desired state only", body = CommandAccepted),
        CommandErrors),
    security(("access_key" = [])))]
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

#[utoipa::path(get, path = "/v1/enterprise/devices/{did}/commands/{command_id}", tag = "enterprise api",
    summary = "A command's status (scope `control`)",
    description = "As `GET /v1/devices/{did}/commands/{id}`: `queued`, `sent`, `ok`, `error` or \
        `expired`; an unknown id, or another device's, is 404. Audited \
        (`enterprise.command_status`).",
    responses((status = 200, description = "the command's status", body = CommandStatus),
        ReadErrors),
    security(("access_key" = [])))]
async fn command_status(
    State(s): State<AppState>,
    Path((did, id)): Path<(String, String)>,
    k: EnterpriseKey,
) -> Result<Json<CommandStatus>, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Control).await?;
    let status = command_status_of(&s, did.as_str(), &id).await?;
    s.core
        .audit_key_access(
            &k.key,
            action::ENTERPRISE_COMMAND_STATUS,
            format!("device:{did} command:{}", id),
        )
        .await;
    Ok(Json(status))
}

/// Delivered like `POST /v1/devices/{did}/raw`; audited there (`device.raw`, actor the key).
#[utoipa::path(post, path = "/v1/enterprise/devices/{did}/raw", tag = "enterprise api",
    summary = "Send a passthrough message to a device (scope `control`)",
    description = "As `POST /v1/devices/{did}/raw`: the signed body's bytes (at most 32 KiB) \
        reach the device unchanged on `dev/{did}/raw/down` (QoS 1); 202 once handed to its live \
        session, 409 `DEVICE_OFFLINE` without one. Audited as `device.raw` with the key as \
        actor, the size and SHA-256, never the bytes. The body is read as signed: no \
        `Content-Type` is required.",
    request_body(description = "the bytes to send, as they are",
        content((super::schemas::RawBytes = "application/octet-stream"))),
    responses((status = 202, description = "handed to the device's session",
        body = super::devices::RawSent), RawErrors),
    security(("access_key" = [])))]
async fn send_raw(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Control).await?;
    if k.body.len() > rampart_proto::topic::RAW_MAX {
        return Err(Error::new(
            crate::error::ErrorCode::PayloadTooLarge,
            format!(
                "a passthrough message may hold at most {} bytes",
                rampart_proto::topic::RAW_MAX
            ),
        ));
    }
    let sent = s
        .core
        .send_raw(
            did.as_str(),
            k.body.clone(),
            &k.key.actor(),
            Some(k.key.source_ip.clone()),
        )
        .await?;
    Ok(super::devices::raw_answer(sent))
}
