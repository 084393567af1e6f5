//! Devices: registration (a signed request from the device itself), listing, reading state and
//! history, commands, re-provisioning windows, and disabling.
//!
//! Access to a device is decided by `rampart_core` (bindings for users, tenancy for developers,
//! grants for third parties); this module only asks and maps the answer to HTTP.

use super::{authorize, page_of, parse_did, parse_pk, Paging};
use crate::extract::{client_ip, Body, Manager, Principal, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use rampart_core::bindings::Need;
use rampart_core::devices::{CommandOutcome, CommandRequest};
use rampart_core::registry::RegisterRequest;
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/device/register", post(register))
        .described("/v1/devices", get(list_devices))
        .described("/v1/devices/{did}", get(get_device))
        .described("/v1/devices/{did}/history", get(history))
        .described("/v1/devices/{did}/commands", post(command))
        .described("/v1/devices/{did}/reprovision", post(reprovision))
        .described("/v1/devices/{did}/disable", post(disable_device))
        .described("/v1/devices/{did}/enable", post(enable_device))
}

async fn register(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(req): Body<RegisterRequest>,
) -> Result<Response, Error> {
    let r = s.core.register(&req, client_ip(&addr)).await?;
    Ok(Json(r).into_response())
}

/// The body of `POST /v1/devices/{did}/reprovision`; the body may be left out.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reprovision {
    expires_in_s: Option<i64>,
}

/// Open a single-use re-provisioning window for a device (admin, or a developer who may manage
/// its product).
async fn reprovision(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let r: Reprovision = if body.iter().all(u8::is_ascii_whitespace) {
        Reprovision::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::new(crate::error::ErrorCode::InvalidJson, e.to_string()))?
    };
    let caller = m.caller();
    s.core
        .authorize_device_for(&caller, did.as_str(), rampart_core::tenancy::Act::Manage)
        .await?;
    let until = s
        .core
        .open_reprovision(
            did.as_str(),
            r.expires_in_s
                .unwrap_or(rampart_core::registry::REPROVISION_DEFAULT_SECS),
            &caller.actor(),
            client_ip(&addr),
        )
        .await?;
    Ok(Json(json!({"did": did.as_str(), "expires_at": until})).into_response())
}

/// Disable (`on`) or enable a device (admin, or a developer who may manage its product).
async fn set_device_disabled(
    s: AppState,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    did: String,
    on: bool,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let caller = m.caller();
    s.core
        .authorize_device_for(&caller, did.as_str(), rampart_core::tenancy::Act::Manage)
        .await?;
    s.core
        .set_device_disabled(did.as_str(), on, &caller.actor(), client_ip(&addr))
        .await?;
    Ok(Json(json!({"did": did.as_str(), "disabled": on})).into_response())
}

async fn disable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, true).await
}

async fn enable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, false).await
}

async fn list_devices(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<Paging>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = match (&m, q.product_key.as_deref()) {
        (Manager::Developer(d), None) => s
            .core
            .store()
            .list_developer_devices(&d.developer_id, (page - 1) * limit, limit)
            .await
            .map_err(rampart_core::Error::from)?,
        (_, pk) => {
            // A developer may list only a product they can read (the operator: any filter).
            if let (Manager::Developer(_), Some(pk)) = (&m, pk) {
                let pk = parse_pk(pk)?;
                s.core
                    .authorize_product(&m.caller(), pk.as_str(), rampart_core::tenancy::Act::Read)
                    .await?;
            }
            s.core
                .store()
                .list_devices(pk, (page - 1) * limit, limit)
                .await
                .map_err(rampart_core::Error::from)?
        }
    };
    let data: Vec<Value> = rows
        .into_iter()
        .map(|d| {
            json!({"did": d.did, "product_key": d.product_key, "hardware_id": d.hardware_id,
                   "online": d.online, "last_seen": d.last_seen, "created_at": d.created_at})
        })
        .collect();
    Ok(page_of(data, page, limit, total))
}

async fn get_device(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    Ok(Json(s.core.device_view(did.as_str()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    point: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Q(q): Q<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    history_page(&s, did.as_str(), &q).await
}

/// The answer of a history query on a device the caller may read.
pub(crate) async fn history_page(
    s: &AppState,
    did: &str,
    q: &HistoryQuery,
) -> Result<Json<Value>, Error> {
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
    let n = rows.len();
    Ok(Json(
        json!({"data": rows, "meta": {"limit": limit, "count": n}}),
    ))
}

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
        CommandOutcome::Acked(ack) => Json(json!(ack)).into_response(),
        CommandOutcome::Queued { id } => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": "queued"})),
        )
            .into_response(),
    }
}
