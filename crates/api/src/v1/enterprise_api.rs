//! The enterprise API's device endpoints, called by business systems with requests signed by
//! an access key: list devices, read one, its history, send it a command.
//!
//! Tenant isolation and scopes are `rampart_core::access::access_keys`'s; this module only maps them to
//! HTTP.

use super::devices::{command_answer, history_page};
use super::{page_of, parse_did, Paging};
use crate::extract::EnterpriseKey;
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use rampart_core::access::access_keys::Scope;
use rampart_core::audit::action;
use rampart_core::device::runtime::CommandRequest;
use serde_json::Value;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/enterprise/devices", get(devices))
        .described("/v1/enterprise/devices/{did}", get(device))
        .described("/v1/enterprise/devices/{did}/history", get(history))
        .described("/v1/enterprise/devices/{did}/commands", post(command))
}

async fn devices(State(s): State<AppState>, k: EnterpriseKey) -> Result<Json<Value>, Error> {
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
    Ok(page_of(rows, page, limit, total))
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

async fn device(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Response, Error> {
    let (did, _) = key_device(&s, &k, &did, Scope::Read).await?;
    let v = s.core.key_device_view(&k.key, did.as_str()).await?;
    s.core
        .audit_key_access(
            &k.key,
            action::ENTERPRISE_DEVICE_READ,
            format!("device:{did}"),
        )
        .await;
    Ok(Json(v).into_response())
}

async fn history(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: EnterpriseKey,
) -> Result<Json<Value>, Error> {
    let q = k.query()?;
    let (did, pk) = key_device(&s, &k, &did, Scope::Read).await?;
    let mut page = history_page(&s, did.as_str(), &q).await?;
    // Sensitive points the key does not name are left out.
    let hidden = s.core.key_hidden_points(&k.key, &pk).await?;
    let count = match page.0["data"].as_array_mut() {
        Some(rows) => {
            rows.retain(|r| {
                !r["point"]
                    .as_str()
                    .is_some_and(|p| hidden.iter().any(|h| h == p))
            });
            rows.len()
        }
        None => 0,
    };
    page.0["meta"]["count"] = count.into();
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
