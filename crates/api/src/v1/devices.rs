//! Devices: registration (a signed request from the device itself), listing, reading state and
//! history, commands and their status, the desired state (shadow), re-provisioning windows, and
//! disabling.
//!
//! Access to a device is decided by `rampart_core` (bindings for users, tenancy for developers,
//! grants for third parties); this module only asks and maps the answer to HTTP. Each handler's
//! `#[utoipa::path]` and answer types make its part of the OpenAPI document.

use super::schemas::{
    Ack, CommandRequestSchema, CommandStatus, DesiredBody, DeviceCertificate, DeviceSummary,
    DeviceView, HistoryMeta, HistoryPage, Millis, Page, PageParams, RegisterRequestSchema,
    Registered, Shadow, Sorted,
};
use super::{authorize, parse_did, parse_pk};
use crate::error::ErrorCode;
use crate::extract::{client_ip, read_capped, Body, Manager, OptionalBody, Principal, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::bindings::Need;
use rampart_core::device::registry::RegisterRequest;
use rampart_core::device::runtime::{CommandOutcome, CommandRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(list_devices))
        .routes(routes!(get_device))
        .routes(routes!(history))
        .routes(routes!(command))
        .routes(routes!(command_status))
        .routes(routes!(put_desired))
        .routes(routes!(reprovision))
        .routes(routes!(disable_device))
        .routes(routes!(enable_device))
        .routes(routes!(delete_device))
        .routes(routes!(send_raw))
}

crate::errors!(RegisterErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, InvalidRequest,
    Unauthorized, Forbidden, AlreadyRegistered, RateLimited, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Forbidden, NotFound, Internal);
crate::errors!(ReadErrors: Unauthorized, Forbidden, InsufficientScope, NotFound, Internal);
crate::errors!(HistoryErrors: Unauthorized, InvalidRequest, Forbidden, InsufficientScope,
    NotFound, Internal);
crate::errors!(CommandErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidDatapoint, Forbidden, InsufficientScope, DeviceOffline, CommandTimeout,
    NotFound, Internal);
crate::errors!(CommandStatusErrors: Unauthorized, Forbidden, InsufficientScope, NotFound, Internal);
crate::errors!(DesiredErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidDatapoint, Forbidden, InsufficientScope, NotFound, Conflict, Internal);
crate::errors!(ReprovisionErrors: Unauthorized, InvalidJson, InvalidRequest, Forbidden, NotFound,
    Internal);
crate::errors!(ManageErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(RawErrors: Unauthorized, PayloadTooLarge, UnsupportedMediaType, Forbidden,
    InsufficientScope, DeviceOffline, NotFound, Internal);

/// A passthrough message handed to the device's session.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"bytes": 4, "sha256": "3d1f57c984978ef98a18378c8166c1cb8ede02c03eeb6aee7e2f121dfeee3e56"}))]
pub(crate) struct RawSent {
    /// the message's size
    #[schema(minimum = 0, maximum = 32768)]
    bytes: usize,
    /// lowercase hex SHA-256 of the bytes
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
}

/// The body of a passthrough message: `application/octet-stream`, at most `topic::RAW_MAX`
/// bytes (413 beyond it, without reading further).
pub(crate) async fn raw_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, Error> {
    let octets = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !octets {
        return Err(Error::new(
            crate::error::ErrorCode::UnsupportedMediaType,
            "a passthrough message is `Content-Type: application/octet-stream`",
        ));
    }
    let raw = read_capped(
        body,
        headers,
        rampart_proto::topic::RAW_MAX,
        "a passthrough message",
    );
    Ok(raw.await?.into())
}

/// The answer to a passthrough message handed to the device's session.
pub(crate) fn raw_answer(sent: rampart_core::device::runtime::RawSent) -> Response {
    let body = RawSent {
        bytes: sent.bytes,
        sha256: sent.sha256,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// A re-provisioning window, open until `expires_at`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "expires_at": 1765086400000_i64}))]
pub(crate) struct ReprovisionWindow {
    did: String,
    #[schema(value_type = Millis)]
    expires_at: i64,
}

/// Whether a device is disabled now.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "disabled": true}))]
pub(crate) struct DeviceDisabled {
    did: String,
    disabled: bool,
}

/// What deleting a device removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "deleted": {"history": 1200, "bindings": 2,
    "shares": 1, "commands": 14, "other": 3}}))]
pub(crate) struct DeviceDeleted {
    did: String,
    deleted: DeletedOfDevice,
}

/// Rows removed with a device, by kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedOfDevice {
    /// history entries (one per report)
    history: u64,
    /// users who were bound to it
    bindings: u64,
    /// shares and share invitations
    shares: u64,
    /// command records
    commands: u64,
    /// desired state, certificate record, OTA records, bind tokens, undelivered events
    other: u64,
}

/// A command queued for a device whose persistent session is parked.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "c1", "status": "queued"}))]
pub(crate) struct Queued {
    id: String,
    status: QueuedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QueuedStatus {
    Queued,
}

/// A `desired` command for a device with no session: nothing was sent; the device gets the
/// desired state (now at `version`) when it connects.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "desired", "version": 3}))]
pub(crate) struct DesiredStored {
    status: DesiredStatus,
    version: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DesiredStatus {
    Desired,
}

/// A command's 202 answer: queued in a parked session, or kept as desired state only.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum CommandAccepted {
    Queued(Queued),
    Desired(DesiredStored),
}

#[utoipa::path(post, path = "/v1/device/register", tag = "devices",
    summary = "Register a device (signed request)",
    description = "Authenticated by the HMAC signature in the body; see docs/protocol.md. Hardware \
        that is already registered answers 409 `ALREADY_REGISTERED` (nothing changes) unless the \
        body carries `device_sign` made with the device's current secret (200: a new \
        `device_secret`, no passcode) or the product's owner opened a window with \
        `POST /v1/devices/{did}/reprovision` (200: a new secret and passcode; every binding, share \
        and bind token of the device ends). Limits `register.ip` and `register.failures.ip` \
        (docs/api.md, Limits).",
    request_body = RegisterRequestSchema,
    responses((status = 200, description = "the device's identity", body = Registered),
        RegisterErrors))]
async fn register(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    cert: Option<Extension<crate::ClientCert>>,
    Body(body): Body<serde_json::Value>,
) -> Result<Response, Error> {
    let invalid_json = |e: serde_json::Error| Error::new(ErrorCode::InvalidJson, e.to_string());
    if body.get("mode").and_then(|m| m.as_str()) == Some("x509") {
        let req: X509Register = serde_json::from_value(body).map_err(invalid_json)?;
        // A body field, not a path: malformed is a bad request, as in the signed form.
        let pk = rampart_proto::ids::ProductKey::parse(&req.product_key)
            .map_err(|_| Error::invalid("product_key: not a product key"))?;
        let ip = client_ip(&addr);
        let did = s
            .core
            .register_certificate(pk.as_str(), cert.as_ref().map(|c| &*c.0 .0), ip.as_deref())
            .await?;
        return Ok(Json(Registered::did_only(did)).into_response());
    }
    let req: RegisterRequest = serde_json::from_value(body).map_err(invalid_json)?;
    let r = s.core.register(&req, client_ip(&addr)).await?;
    Ok(Json(Registered::from(r)).into_response())
}

/// Registration with the client certificate of the TLS connection.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct X509Register {
    /// `x509`, checked before this is parsed.
    #[serde(rename = "mode")]
    _mode: String,
    product_key: String,
}

/// The body of `POST /v1/devices/{did}/reprovision`; the body may be left out.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReprovisionBody, example = json!({"expires_in_s": 3600}))]
struct Reprovision {
    /// how long the window stays open, in seconds
    #[schema(value_type = i64, required = false, minimum = 1, maximum = 2592000, default = 86400)]
    expires_in_s: Option<i64>,
}

/// Open a single-use re-provisioning window for a device (admin, or a developer who may manage
/// its product).
#[utoipa::path(post, path = "/v1/devices/{did}/reprovision", tag = "devices",
    summary = "Open a re-provisioning window",
    description = "Audited (`device.reprovision_open`). The device's next registration (within the \
        window, once) gets a new secret and a new passcode, and every binding, share and bind token \
        of the device ends. Opening it again moves its end. The body may be left out.",
    request_body(content = Option<Reprovision>, description = "how long the window stays open"),
    responses((status = 200, description = "the window is open", body = ReprovisionWindow),
        ReprovisionErrors),
    security(("admin" = []), ("developer" = [])))]
async fn reprovision(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    OptionalBody(r): OptionalBody<Reprovision>,
) -> Result<Response, Error> {
    let (did, caller) = managed(&s, &m, &did).await?;
    let until = s
        .core
        .open_reprovision(
            did.as_str(),
            r.expires_in_s
                .unwrap_or(rampart_core::device::registry::REPROVISION_DEFAULT_SECS),
            &caller.actor(),
            client_ip(&addr),
        )
        .await?;
    let window = ReprovisionWindow {
        did: did.as_str().to_owned(),
        expires_at: until,
    };
    Ok(Json(window).into_response())
}

/// The device `did` names, once the caller proved they may manage it (admin, or a developer
/// who may manage its product); with the caller, for the audit.
async fn managed(
    s: &AppState,
    m: &Manager,
    did: &str,
) -> Result<
    (
        rampart_proto::ids::Did,
        rampart_core::access::tenancy::Caller,
    ),
    Error,
> {
    let did = parse_did(did)?;
    let caller = m.caller();
    s.core
        .authorize_device_for(
            &caller,
            did.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    Ok((did, caller))
}

/// Disable (`on`) or enable a device (admin, or a developer who may manage its product).
async fn set_device_disabled(
    s: AppState,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    did: String,
    on: bool,
) -> Result<Response, Error> {
    let (did, caller) = managed(&s, &m, &did).await?;
    s.core
        .set_device_disabled(did.as_str(), on, &caller.actor(), client_ip(&addr))
        .await?;
    let now = DeviceDisabled {
        did: did.as_str().to_owned(),
        disabled: on,
    };
    Ok(Json(now).into_response())
}

#[utoipa::path(post, path = "/v1/devices/{did}/disable", tag = "devices",
    summary = "Disable a device",
    description = "Audited (`device.disable`). The device's live MQTT session is closed at once \
        (DISCONNECT `0x98`, administrative action) and its CONNECTs are refused as not authorised \
        (`0x87`; MQTT 3.1.1 `0x05`) until it is enabled; its secret, bindings and history stay.",
    responses((status = 200, description = "the device is disabled", body = DeviceDisabled),
        ManageErrors),
    security(("admin" = []), ("developer" = [])))]
async fn disable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, true).await
}

#[utoipa::path(post, path = "/v1/devices/{did}/enable", tag = "devices",
    summary = "Enable a disabled device",
    description = "Audited (`device.enable`). The device may connect again.",
    responses((status = 200, description = "the device is enabled", body = DeviceDisabled),
        ManageErrors),
    security(("admin" = []), ("developer" = [])))]
async fn enable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, false).await
}

#[utoipa::path(delete, path = "/v1/devices/{did}", tag = "devices",
    summary = "Delete a device and everything recorded about it",
    description = "Audited (`device.delete`, with the counts). Owner or admin of the product (or \
        an operator). The device's live MQTT session is closed first (DISCONNECT `0x98`) and its \
        CONNECTs are refused; then its secrets, latest state, history, bindings, shares, commands, \
        desired state, certificate and OTA records are removed in one transaction. There is no \
        undo: the device can come back only by registering again as a new device.",
    responses((status = 200, description = "deleted; what was removed", body = DeviceDeleted),
        ManageErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let (did, caller) = managed(&s, &m, &did).await?;
    let e = s
        .core
        .erase_device(did.as_str(), &caller.actor(), client_ip(&addr))
        .await?;
    Ok(Json(DeviceDeleted {
        did: did.as_str().to_owned(),
        deleted: DeletedOfDevice {
            history: e.history,
            bindings: e.bindings,
            shares: e.shares,
            commands: e.commands,
            other: e.other,
        },
    })
    .into_response())
}

/// The query of `GET /v1/devices`: a page, and optionally one product and a search.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceListQuery {
    page: Option<i64>,
    limit: Option<i64>,
    product_key: Option<String>,
    q: Option<String>,
}

/// Longest search: a did or a hardware id is at most this long.
const SEARCH_MAX: usize = 64;

/// The search of a device list, `None` when empty; ids are printable ASCII, so anything else is
/// refused rather than searched for in vain.
fn device_search(q: Option<&str>) -> Result<Option<&str>, Error> {
    match q {
        None | Some("") => Ok(None),
        Some(q) if q.len() <= SEARCH_MAX && q.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(q)),
        Some(_) => Err(Error::invalid(format!(
            "q must be at most {SEARCH_MAX} printable ASCII characters without spaces"
        ))),
    }
}

#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    summary = "List the devices the caller may read",
    description = "Oldest first. With `q`, only the devices whose did or hardware id starts with \
        `q` (ASCII letters in either case; `%` and `_` are plain characters); `meta.total` counts \
        those.",
    params(("product_key" = Option<String>, Query, description = "only this product's devices"),
        ("q" = Option<String>, Query, max_length = 64,
            description = "only devices whose did or hardware id starts with this (case-insensitive prefix; empty: all)"),
        PageParams),
    responses((status = 200, description = "a page of devices", body = Page<DeviceSummary>),
        ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_devices(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<DeviceListQuery>,
) -> Result<Json<Page<DeviceSummary>>, Error> {
    let (page, limit) = super::PageQuery::of(q.page, q.limit).resolve()?;
    let search = device_search(q.q.as_deref())?;
    // A developer's filter must be a well-formed key (the operator's is only compared).
    if let (Manager::Developer(_), Some(pk)) = (&m, q.product_key.as_deref()) {
        parse_pk(pk)?;
    }
    let (rows, total) = s
        .core
        .list_devices_for(
            &m.caller(),
            q.product_key.as_deref(),
            search,
            (page - 1) * limit,
            limit,
        )
        .await?;
    let data = rows
        .into_iter()
        .map(|d| DeviceSummary {
            did: d.did,
            product_key: d.product_key,
            hardware_id: d.hardware_id,
            online: d.online,
            last_seen: d.last_seen,
            created_at: d.created_at,
        })
        .collect();
    Ok(Json(Page::of(data, page, limit, total)))
}

#[utoipa::path(get, path = "/v1/devices/{did}", tag = "devices",
    summary = "A device, its latest state and its shadow",
    responses((status = 200, description = "the device", body = DeviceView), ReadErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:read"])))]
async fn get_device(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    let view = s.core.device_view(did.as_str()).await?;
    let reported = view.state.as_object().cloned().unwrap_or_default();
    let shadow = s.core.device_shadow(did.as_str(), reported).await?;
    let certificate = s.core.device_certificate(did.as_str()).await?;
    let mut view = DeviceView::from(view);
    view.shadow = Some(Shadow::from(shadow));
    view.certificate = certificate.map(|c| DeviceCertificate {
        sha256: c.sha256,
        not_after: c.not_after,
    });
    view.public_key = s
        .core
        .device_public_key(did.as_str())
        .await?
        .map(|ed25519| super::schemas::DevicePublicKey { ed25519 });
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    point: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/devices/{did}/history", tag = "devices",
    summary = "A device's reported values, newest first",
    params(("point" = Option<String>, Query, description = "only this data point"),
        ("from" = Option<i64>, Query, description = "from this time (unix ms)"),
        ("to" = Option<i64>, Query, description = "up to this time (unix ms)"),
        ("limit" = Option<i64>, Query, description = "at most this many values",
            minimum = 1, maximum = 1000)),
    responses((status = 200, description = "the values", body = HistoryPage), HistoryErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:read"])))]
async fn history(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Q(q): Q<HistoryQuery>,
) -> Result<Sorted<HistoryPage>, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    history_page(&s, did.as_str(), &q).await
}

/// The answer of a history query on a device the caller may read.
pub(crate) async fn history_page(
    s: &AppState,
    did: &str,
    q: &HistoryQuery,
) -> Result<Sorted<HistoryPage>, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit must be 1..=1000"));
    }
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(Error::invalid("from must not be after to"));
    }
    let point = q.point.as_deref().filter(|p| !p.is_empty());
    let rows = s.core.device_history(did, point, from, to, limit).await?;
    let count = rows.len();
    Ok(Sorted(HistoryPage {
        data: rows,
        meta: HistoryMeta { limit, count },
    }))
}

#[utoipa::path(post, path = "/v1/devices/{did}/commands", tag = "devices",
    summary = "Send a command to a device",
    description = "Waits for the device's acknowledgement (`commands.timeout_ms`). The destructive \
        actions `factory_reset` and `wipe` need the owner role (a member or guest gets 403 \
        `FORBIDDEN`); a third-party token needs `devices:admin` for them. Each command is \
        recorded: `GET /v1/devices/{did}/commands/{id}` answers its status. With `\"desired\": \
        true`, the `set` values are also merged into the device's desired state (as by \
        `PUT /v1/devices/{did}/desired`); a device with no session then gets them when it \
        connects (202 `{\"status\": \"desired\"}`) instead of 409 `DEVICE_OFFLINE`.",
    request_body = CommandRequestSchema,
    responses((status = 200, description = "the device's acknowledgement", body = Ack),
        (status = 202, description = "queued in a parked persistent session, or (`desired` to a \
            device with no session) kept as desired state only", body = CommandAccepted),
        CommandErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:control"])))]
async fn command(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Body(req): Body<CommandRequest>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    // Erasing a device is its owner's decision (a third party needs `devices:admin`).
    let need = match req.action {
        Some(
            rampart_proto::command::Action::FactoryReset | rampart_proto::command::Action::Wipe,
        ) => Need::Own,
        _ => Need::Control,
    };
    let actor = authorize(&s, &p, did.as_str(), need, &addr).await?;
    let outcome = s
        .core
        .send_command(did.as_str(), req, &actor, client_ip(&addr))
        .await?;
    Ok(command_answer(outcome))
}

/// 200 with the device's ack, or 202 for a command queued for a parked session.
pub(crate) fn command_answer(outcome: CommandOutcome) -> Response {
    match outcome {
        CommandOutcome::Acked(ack) => Sorted(ack).into_response(),
        CommandOutcome::Queued { id } => (
            StatusCode::ACCEPTED,
            Json(CommandAccepted::Queued(Queued {
                id,
                status: QueuedStatus::Queued,
            })),
        )
            .into_response(),
        CommandOutcome::Desired { version } => (
            StatusCode::ACCEPTED,
            Json(CommandAccepted::Desired(DesiredStored {
                status: DesiredStatus::Desired,
                version,
            })),
        )
            .into_response(),
    }
}

/// The longest command id looked up; longer ones are unknown.
const COMMAND_ID_MAX: usize = 64;

/// The status of command `id` of `did`, for a caller who may command the device.
pub(crate) async fn command_status_of(
    s: &AppState,
    did: &str,
    id: &str,
) -> Result<CommandStatus, Error> {
    if id.is_empty() || id.len() > COMMAND_ID_MAX {
        return Err(Error::not_found("command"));
    }
    Ok(CommandStatus::from(s.core.command_status(did, id).await?))
}

#[utoipa::path(get, path = "/v1/devices/{did}/commands/{command_id}", tag = "devices",
    summary = "A command's status",
    description = "`queued` (waiting in a parked persistent session), `sent` (handed to the \
        device's session), `ok` or `error` (the device's acknowledgement; `detail` is its \
        message), `expired` (no acknowledgement before `expires_at`, \
        `commands.queued_ttl_secs` after it was sent). Records are kept a day past their expiry. \
        The same access as sending a command to the device; an unknown id, or the id of another \
        device's command, is 404.",
    responses((status = 200, description = "the command's status", body = CommandStatus),
        CommandStatusErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:control"])))]
async fn command_status(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path((did, id)): Path<(String, String)>,
) -> Result<Json<CommandStatus>, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Control, &addr).await?;
    Ok(Json(command_status_of(&s, did.as_str(), &id).await?))
}

#[utoipa::path(post, path = "/v1/devices/{did}/raw", tag = "devices",
    summary = "Send a passthrough message to a device",
    description = "The body's bytes (`application/octet-stream`, at most 32 KiB; more is 413 \
        `PAYLOAD_TOO_LARGE`) reach the device unchanged on `dev/{did}/raw/down` at QoS 1, if it \
        subscribes to that topic. 202 once they are handed to the device's live session (not \
        after the device's PUBACK); a device with no live session is 409 `DEVICE_OFFLINE` \
        (nothing is queued). Needs the control role, like a command. Audited (`device.raw`) \
        with the size and SHA-256, never the bytes.",
    request_body(description = "the bytes to send, as they are",
        content((super::schemas::RawBytes = "application/octet-stream"))),
    responses((status = 202, description = "handed to the device's session", body = RawSent),
        RawErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:control"])))]
async fn send_raw(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let actor = authorize(&s, &p, did.as_str(), Need::Control, &addr).await?;
    let bytes = raw_body(&headers, body).await?;
    let sent = s
        .core
        .send_raw(did.as_str(), bytes, &actor, client_ip(&addr))
        .await?;
    Ok(raw_answer(sent))
}

#[utoipa::path(put, path = "/v1/devices/{did}/desired", tag = "devices",
    summary = "Change a device's desired state",
    description = "Merged into the desired state: a value sets its data point (validated against \
        the product model like a command's `set`: known, writable, in range), `null` removes it, \
        points not named stay. The version grows by one when anything changed. A desired point \
        stays desired once the device reports it; it only leaves `delta`. A change of the delta \
        is pushed as a `delta` event, and a device with a non-empty delta is told it at every \
        CONNECT (docs/protocol.md). Needs the control role (member or owner).",
    request_body = DesiredBody,
    responses((status = 200, description = "the device's shadow", body = Shadow), DesiredErrors),
    security(("admin" = []), ("user" = []), ("developer" = []), ("oauth" = ["devices:control"])))]
async fn put_desired(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Body(changes): Body<rampart_proto::model::Values>,
) -> Result<Json<Shadow>, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Control, &addr).await?;
    let shadow = s.core.merge_desired(did.as_str(), &changes).await?;
    Ok(Json(Shadow::from(shadow)))
}
