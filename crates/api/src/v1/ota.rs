//! Over-the-air updates over HTTP: the firmware registry (multipart upload, list, delete), the
//! product's OTA public key, campaigns (create, read, pause, resume, abort), and the device's
//! side for devices that use HTTPS: the check, progress reports and the download with `Range`.
//!
//! Rules (who may, which transitions, what a device may fetch) are `rampart_core::ota`'s; this
//! module maps HTTP to them. Device requests are authenticated like a CONNECT: HTTP Basic with
//! the CONNECT user name (`did|hmac-sha256|ts`) and password (docs/ota.md).

use super::schemas::{Millis, Page, PageParams};
use super::{page_of, parse_pk, PageQuery};
use crate::extract::{Body, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rampart_core::device::runtime::DeviceAuth;
use rampart_core::ota::campaign::{CampaignAction, CampaignView, NewCampaign};
use rampart_core::ota::{FirmwareView, NewFirmware};
use rampart_proto::ota::{Check, Manifest, Status, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(upload_firmware, list_firmware))
        .routes(routes!(delete_firmware))
        .routes(routes!(ota_key))
        .routes(routes!(create_campaign, list_campaigns))
        .routes(routes!(get_campaign))
        .routes(routes!(campaign_devices))
        .routes(routes!(pause_campaign))
        .routes(routes!(resume_campaign))
        .routes(routes!(abort_campaign))
        .routes(routes!(device_check))
        .routes(routes!(device_status))
        .routes(routes!(device_download))
        .routes(routes!(enterprise_device_ota))
}

// ---- firmware ----

/// The multipart form of a firmware upload.
#[derive(ToSchema)]
#[allow(dead_code)] // only described: the handler reads the parts as they stream in
pub(crate) struct FirmwareForm {
    /// the image (at most `ota.max_firmware_bytes`, 64 MiB by default)
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `module` or `mcu`
    #[schema(example = "module")]
    target: String,
    /// semantic version
    #[schema(example = "1.4.0")]
    version: String,
    /// comma-separated; empty or absent: any hardware
    #[schema(example = "B1,B2")]
    hardware_versions: Option<String>,
    notes: Option<String>,
}

/// A stored firmware image.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"firmware_id": "fw_k2j4h6g8f0d2s4a6q8w0", "product_key": "pk_1a2b3c",
    "target": "module", "version": "1.4.0", "sequence": 3, "hardware_versions": ["B1"],
    "notes": "fixes the Wi-Fi reconnect", "size": 524288, "md5": "5d41402abc4b2a76b9719d911017c592",
    "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    "created_at": 1765000000000_i64}))]
pub(crate) struct Firmware {
    firmware_id: String,
    product_key: String,
    /// `module` or `mcu`
    target: String,
    version: String,
    /// rises with every release of the product and target
    sequence: i64,
    hardware_versions: Vec<String>,
    notes: String,
    size: u64,
    md5: String,
    sha256: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<FirmwareView> for Firmware {
    fn from(f: FirmwareView) -> Self {
        Firmware {
            firmware_id: f.firmware_id,
            product_key: f.product_key,
            target: f.target,
            version: f.version,
            sequence: f.sequence,
            hardware_versions: f.hardware_versions,
            notes: f.notes,
            size: f.size,
            md5: f.md5,
            sha256: f.sha256,
            created_at: f.created_at,
        }
    }
}

crate::errors!(UploadErrors: Unauthorized, InvalidRequest, Forbidden, NotFound, Conflict,
    PayloadTooLarge, UnsupportedMediaType, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Forbidden, NotFound, Internal);
crate::errors!(ReadErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(DeleteErrors: Unauthorized, Forbidden, NotFound, Conflict, Internal);

/// Longest text field of the upload form.
const FIELD_MAX: usize = 8 * 1024;

/// The bytes of a text part, at most [`FIELD_MAX`].
async fn text_field(mut f: multer::Field<'_>, name: &str) -> Result<String, Error> {
    let mut out = Vec::new();
    while let Some(chunk) = f.chunk().await.map_err(multipart_error)? {
        if out.len() + chunk.len() > FIELD_MAX {
            return Err(Error::invalid(format!(
                "`{name}` may hold at most {FIELD_MAX} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).map_err(|_| Error::invalid(format!("`{name}` is not UTF-8")))
}

fn multipart_error(e: multer::Error) -> Error {
    Error::invalid(format!("multipart body: {e}"))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/firmware", tag = "ota",
    summary = "Upload a firmware image",
    description = "Multipart (`multipart/form-data`): `file` (the image) and the fields `target` \
        (`module` or `mcu`), `version` (semantic version, unique per target), `hardware_versions` \
        (comma-separated; empty for any hardware) and `notes`. The image is written to disk as it \
        arrives, hashed (SHA-256, MD5) and kept by its SHA-256; past `ota.max_firmware_bytes` \
        (64 MiB) the upload stops with 413. The release gets the next `sequence` of its product \
        and target. Needs the right to manage the product (owners and admins). Audited \
        (`ota.firmware_upload`).",
    params(("product_key" = String, Path, description = "the product")),
    request_body(content = FirmwareForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "the stored image", body = Firmware), UploadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn upload_firmware(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let caller = m.caller();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        Error::new(
            crate::error::ErrorCode::UnsupportedMediaType,
            "a firmware upload is `multipart/form-data` with a boundary",
        )
    })?;
    let mut upload = s.core.firmware_upload_start(&caller, pk.as_str()).await?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut meta = NewFirmware::default();
    let (mut has_file, mut has_target, mut has_version) = (false, false, false);
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" if !has_file => {
                has_file = true;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    upload.write(&chunk).await?;
                }
            }
            "target" if !has_target => {
                has_target = true;
                meta.target = text_field(field, "target").await?;
            }
            "version" if !has_version => {
                has_version = true;
                meta.version = text_field(field, "version").await?;
            }
            "hardware_versions" => meta.hardware_versions = text_field(field, &name).await?,
            "notes" => meta.notes = text_field(field, &name).await?,
            "file" | "target" | "version" => {
                return Err(Error::invalid(format!("`{name}` given twice")))
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown part `{}`: the form has `file`, `target`, `version`, \
                     `hardware_versions` and `notes`",
                    other.chars().take(64).collect::<String>()
                )))
            }
        }
    }
    for (given, name) in [
        (has_file, "file"),
        (has_target, "target"),
        (has_version, "version"),
    ] {
        if !given {
            return Err(Error::invalid(format!("the part `{name}` is missing")));
        }
    }
    let fw = s
        .core
        .firmware_register(&caller, pk.as_str(), meta, upload)
        .await?;
    Ok((StatusCode::CREATED, Json(Firmware::from(fw))).into_response())
}

#[utoipa::path(get, path = "/v1/products/{product_key}/firmware", tag = "ota",
    summary = "List a product's firmware, newest first",
    params(("product_key" = String, Path, description = "the product"), PageParams),
    responses((status = 200, description = "a page of firmware images", body = Page<Firmware>),
        ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_firmware(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Q(q): Q<PageQuery>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .firmware_list(&m.caller(), pk.as_str(), page, limit)
        .await?;
    let rows: Vec<Firmware> = rows.into_iter().map(Firmware::from).collect();
    Ok(page_of(rows, page, limit, total).into_response())
}

#[utoipa::path(delete, path = "/v1/products/{product_key}/firmware/{firmware_id}", tag = "ota",
    summary = "Delete a firmware image",
    description = "Refused (409 `CONFLICT`) while a running or paused campaign uses it. Its bytes \
        leave the store when no other image has the same content. Audited (`ota.firmware_delete`).",
    params(("product_key" = String, Path, description = "the product"),
        ("firmware_id" = String, Path, description = "the image")),
    responses((status = 204, description = "deleted"), DeleteErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_firmware(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    let pk = parse_pk(&pk)?;
    s.core
        .firmware_delete(&m.caller(), pk.as_str(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The product's OTA public key.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ed25519": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}))]
pub(crate) struct OtaKey {
    /// 32 bytes, standard base64
    ed25519: String,
}

#[utoipa::path(get, path = "/v1/products/{product_key}/ota-key", tag = "ota",
    summary = "The product's OTA signing key (public half)",
    description = "Ed25519; made on first use, its private half sealed at rest and never shown. \
        Burn it into the product's devices: they accept a manifest only with a valid signature \
        by it (docs/ota.md).",
    params(("product_key" = String, Path, description = "the product")),
    responses((status = 200, description = "the public key", body = OtaKey), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn ota_key(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Json<OtaKey>, Error> {
    let pk = parse_pk(&pk)?;
    let key = s.core.ota_public_key(&m.caller(), pk.as_str()).await?;
    Ok(Json(OtaKey {
        ed25519: base64::engine::general_purpose::STANDARD.encode(key),
    }))
}

// ---- campaigns ----

/// Which devices a campaign is for; every given list must match.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // only described: the core's `Selector` reads it
pub(crate) struct CampaignSelector {
    /// hardware versions the devices' checks named
    hardware_versions: Option<Vec<String>>,
    /// versions the devices run now
    from_versions: Option<Vec<String>>,
    dids: Option<Vec<String>>,
}

/// A new campaign.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // only described: the core's `NewCampaign` reads it
#[schema(as = NewCampaign, example = json!({"firmware_id": "fw_k2j4h6g8f0d2s4a6q8w0",
    "selector": {"hardware_versions": ["B1"]}, "stages": [1, 10, 100], "max_failure_percent": 5,
    "min_devices_per_stage": 1, "device_timeout_secs": 3600}))]
pub(crate) struct NewCampaignBody {
    firmware_id: String,
    selector: Option<CampaignSelector>,
    /// cumulative percentages of the selected devices, rising, each 1..=100
    #[schema(default = json!([1, 10, 100]))]
    stages: Option<Vec<u32>>,
    /// the campaign pauses itself when a stage's failures and timeouts pass this share
    #[schema(minimum = 0, maximum = 100, default = 5)]
    max_failure_percent: Option<u32>,
    #[schema(minimum = 0, maximum = 100000, default = 1)]
    min_devices_per_stage: Option<u32>,
    /// a device that has not succeeded this long after its stage opened has timed out
    #[schema(minimum = 1, maximum = 2592000, default = 3600)]
    device_timeout_secs: Option<u64>,
    /// roll out an image older (lower `sequence`) than the newest of its target; owners only
    #[schema(default = false)]
    rollback: Option<bool>,
}

/// A created campaign.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"campaign_id": "cmp_a1b2c3d4e5f6g7h8i9j0"}))]
pub(crate) struct CreatedCampaign {
    campaign_id: String,
}

/// A campaign and where its devices stand.
#[derive(Serialize, ToSchema)]
#[schema(as = Campaign, example = json!({"campaign_id": "cmp_a1b2c3d4e5f6g7h8i9j0",
    "product_key": "pk_1a2b3c", "firmware_id": "fw_k2j4h6g8f0d2s4a6q8w0", "state": "paused",
    "stage": 2, "stages": [1, 10, 100],
    "reason": "stage 2: 6 of 90 devices failed or timed out (6.7%), over max_failure_percent 5%",
    "counts": {"notified": 3, "downloading": 2, "downloaded": 0, "verified": 0, "applying": 1,
        "succeeded": 88, "failed": 4, "timed_out": 2}, "devices": 1000,
    "selector": {}, "max_failure_percent": 5, "min_devices_per_stage": 1,
    "device_timeout_secs": 3600, "rollback": false, "created_at": 1765000000000_i64,
    "updated_at": 1765000360000_i64}))]
pub(crate) struct CampaignOut {
    campaign_id: String,
    product_key: String,
    firmware_id: String,
    /// `running`, `paused`, `done` or `aborted`
    state: String,
    /// the stage being rolled out, from 1
    stage: i64,
    stages: Vec<u32>,
    /// why the campaign paused or stopped
    reason: Option<String>,
    /// devices in each state: `notified`, `downloading`, `downloaded`, `verified`, `applying`,
    /// `succeeded`, `failed`, `timed_out` (devices of stages not opened yet are in none)
    counts: BTreeMap<String, i64>,
    /// devices in the campaign
    devices: i64,
    #[schema(value_type = Object)]
    selector: serde_json::Value,
    max_failure_percent: i64,
    min_devices_per_stage: i64,
    device_timeout_secs: i64,
    rollback: bool,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(value_type = Millis)]
    updated_at: i64,
}

impl From<CampaignView> for CampaignOut {
    fn from(c: CampaignView) -> Self {
        CampaignOut {
            selector: serde_json::to_value(&c.selector).unwrap_or_default(),
            campaign_id: c.campaign_id,
            product_key: c.product_key,
            firmware_id: c.firmware_id,
            state: c.state,
            stage: c.stage,
            stages: c.stages,
            reason: c.reason,
            counts: c
                .counts
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            devices: c.devices,
            max_failure_percent: c.max_failure_percent,
            min_devices_per_stage: c.min_devices_per_stage,
            device_timeout_secs: c.device_timeout_secs,
            rollback: c.rollback,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Conflict, Internal);
crate::errors!(ActErrors: Unauthorized, Forbidden, NotFound, Conflict, Internal);

#[utoipa::path(post, path = "/v1/products/{product_key}/campaigns", tag = "ota",
    summary = "Start a campaign",
    description = "Chooses the product's devices that match the selector and the firmware's \
        hardware versions (and do not run its version already), splits them into stages by \
        cumulative percentage (each at least `min_devices_per_stage`), opens the first stage and \
        sends the manifest to its online devices. A stage opens when every device of the one \
        before finished; failures and timeouts over `max_failure_percent` of a stage pause the \
        campaign with a `reason`. An image older than the newest of its target needs \
        `\"rollback\": true`, which only owners may ask for (403 otherwise). One running or \
        paused campaign per product and target (409). Audited (`ota.campaign_create`).",
    params(("product_key" = String, Path, description = "the product")),
    request_body = NewCampaignBody,
    responses((status = 201, description = "the campaign, started", body = CreatedCampaign),
        CreateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn create_campaign(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<NewCampaign>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let campaign_id = s.core.campaign_create(&m.caller(), pk.as_str(), b).await?;
    Ok((StatusCode::CREATED, Json(CreatedCampaign { campaign_id })).into_response())
}

#[utoipa::path(get, path = "/v1/products/{product_key}/campaigns/{campaign_id}", tag = "ota",
    summary = "A campaign: its state, stage and device counts",
    params(("product_key" = String, Path, description = "the product"),
        ("campaign_id" = String, Path, description = "the campaign")),
    responses((status = 200, description = "the campaign", body = CampaignOut), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn get_campaign(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
) -> Result<Json<CampaignOut>, Error> {
    let pk = parse_pk(&pk)?;
    let c = s.core.campaign_get(&m.caller(), pk.as_str(), &id).await?;
    Ok(Json(c.into()))
}

#[utoipa::path(get, path = "/v1/products/{product_key}/campaigns", tag = "ota",
    summary = "A product's campaigns",
    params(("product_key" = String, Path, description = "the product"), PageParams),
    responses((status = 200, description = "a page of the product's campaigns, newest first, each as GET of one answers it",
        body = Page<CampaignOut>), ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_campaigns(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Q(q): Q<PageQuery>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .campaign_list(&m.caller(), pk.as_str(), page, limit)
        .await?;
    let rows: Vec<CampaignOut> = rows.into_iter().map(Into::into).collect();
    Ok(page_of(rows, page, limit, total).into_response())
}

/// One device's part in a campaign.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "k3v0d6x1q9m2b7c4n8zt", "stage": 2, "state": "failed",
    "bytes": 49152, "reason": "the image's SHA-256 does not match the manifest",
    "deadline_at": 1765003600000_i64, "updated_at": 1765000420000_i64}))]
pub(crate) struct CampaignDeviceOut {
    did: String,
    /// from 1
    stage: i64,
    /// `pending` (its stage has not opened, or it was not told yet), then as in `counts`
    state: String,
    bytes: i64,
    reason: Option<String>,
    #[schema(value_type = Option<Millis>)]
    deadline_at: Option<i64>,
    #[schema(value_type = Millis)]
    updated_at: i64,
}

#[utoipa::path(get, path = "/v1/products/{product_key}/campaigns/{campaign_id}/devices", tag = "ota",
    summary = "A campaign's devices and where each stands",
    params(("product_key" = String, Path, description = "the product"),
        ("campaign_id" = String, Path, description = "the campaign"), PageParams),
    responses((status = 200, description = "a page of the campaign's devices, by stage and did",
        body = Page<CampaignDeviceOut>), ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn campaign_devices(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
    Q(q): Q<PageQuery>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .campaign_devices(&m.caller(), pk.as_str(), &id, page, limit)
        .await?;
    let rows: Vec<CampaignDeviceOut> = rows
        .into_iter()
        .map(|d| CampaignDeviceOut {
            did: d.did,
            stage: d.stage,
            state: d.state,
            bytes: d.bytes,
            reason: d.reason,
            deadline_at: d.deadline_at,
            updated_at: d.updated_at,
        })
        .collect();
    Ok(page_of(rows, page, limit, total).into_response())
}

async fn act(
    s: &AppState,
    m: &Manager,
    pk: &str,
    id: &str,
    what: CampaignAction,
) -> Result<Json<CampaignOut>, Error> {
    let pk = parse_pk(pk)?;
    let c = s
        .core
        .campaign_act(&m.caller(), pk.as_str(), id, what)
        .await?;
    Ok(Json(c.into()))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/campaigns/{campaign_id}/pause", tag = "ota",
    summary = "Pause a running campaign",
    description = "No device is told of the update until it resumes; deadlines stop. Audited.",
    params(("product_key" = String, Path, description = "the product"),
        ("campaign_id" = String, Path, description = "the campaign")),
    responses((status = 200, description = "the campaign", body = CampaignOut), ActErrors),
    security(("admin" = []), ("developer" = [])))]
async fn pause_campaign(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
) -> Result<Json<CampaignOut>, Error> {
    act(&s, &m, &pk, &id, CampaignAction::Pause).await
}

#[utoipa::path(post, path = "/v1/products/{product_key}/campaigns/{campaign_id}/resume", tag = "ota",
    summary = "Resume a paused campaign",
    description = "The current stage's failures so far are accepted (they no longer count \
        towards `max_failure_percent`); unfinished devices get a fresh deadline. Audited.",
    params(("product_key" = String, Path, description = "the product"),
        ("campaign_id" = String, Path, description = "the campaign")),
    responses((status = 200, description = "the campaign", body = CampaignOut), ActErrors),
    security(("admin" = []), ("developer" = [])))]
async fn resume_campaign(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
) -> Result<Json<CampaignOut>, Error> {
    act(&s, &m, &pk, &id, CampaignAction::Resume).await
}

#[utoipa::path(post, path = "/v1/products/{product_key}/campaigns/{campaign_id}/abort", tag = "ota",
    summary = "Abort a campaign",
    description = "For good: devices that check get no manifest of it. Audited.",
    params(("product_key" = String, Path, description = "the product"),
        ("campaign_id" = String, Path, description = "the campaign")),
    responses((status = 200, description = "the campaign", body = CampaignOut), ActErrors),
    security(("admin" = []), ("developer" = [])))]
async fn abort_campaign(
    State(s): State<AppState>,
    m: Manager,
    Path((pk, id)): Path<(String, String)>,
) -> Result<Json<CampaignOut>, Error> {
    act(&s, &m, &pk, &id, CampaignAction::Abort).await
}

// ---- the device's side over HTTPS ----

/// The device that signed this request (HTTP Basic with its CONNECT user name and password).
/// An extractor, so it is checked before the query or body is read: an unsigned request is a 401
/// whatever else is wrong with it.
pub(crate) struct DeviceCaller(DeviceAuth);

impl axum::extract::FromRequestParts<AppState> for DeviceCaller {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<DeviceCaller, Error> {
        let raw = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .ok_or_else(Error::unauthorized)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|_| Error::unauthorized())?;
        let text = String::from_utf8(decoded).map_err(|_| Error::unauthorized())?;
        let (user, pass) = text.split_once(':').ok_or_else(Error::unauthorized)?;
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|ClientAddr(a)| a.ip().to_string())
            .unwrap_or_default();
        s.core
            .authenticate_device_request(user, pass, &ip)
            .await
            .map(DeviceCaller)
            .map_err(|_| Error::unauthorized())
    }
}

/// What a device runs, as query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckQuery {
    /// `module` or `mcu`
    #[param(value_type = String)]
    target: Target,
    /// the version the device runs (semantic version)
    version: String,
    /// the sequence of the running image
    sequence: Option<i64>,
    hardware_version: Option<String>,
}

/// A signed manifest (docs/ota.md).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // only described: `rampart_proto::ota::Manifest` is what is sent
#[schema(as = OtaManifest, example = json!({"campaign_id": "cmp_a1b2c3d4e5f6g7h8i9j0",
    "expires_at": 1765000900000_i64, "firmware_id": "fw_k2j4h6g8f0d2s4a6q8w0",
    "md5": "5d41402abc4b2a76b9719d911017c592", "product_key": "pk_1a2b3c", "sequence": 3,
    "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "size": 5,
    "target": "module",
    "url": "/v1/device/ota/firmware/fw_k2j4h6g8f0d2s4a6q8w0?did=d1&expires=1765000900000&sig=ab12",
    "version": "1.4.0", "signature": "base64 Ed25519 signature"}))]
pub(crate) struct ManifestOut {
    firmware_id: String,
    product_key: String,
    target: String,
    version: String,
    sequence: i64,
    size: u64,
    md5: String,
    sha256: String,
    /// short-lived, for this device only; a path is resolved against the API's address
    url: String,
    #[schema(value_type = Millis)]
    expires_at: i64,
    /// present (and signed) only when true: the one case a lower sequence is accepted
    rollback: Option<bool>,
    campaign_id: Option<String>,
    /// Ed25519 (base64) over the manifest without `signature`, keys sorted, no spaces
    signature: String,
}

crate::errors!(DeviceErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(DeviceStatusErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, NotFound, Conflict, Internal);
crate::errors!(DownloadErrors: Unauthorized, InvalidRequest, Forbidden, RangeNotSatisfiable,
    Internal);

#[utoipa::path(get, path = "/v1/device/ota", tag = "device-ota",
    summary = "A device's update check (HTTPS devices)",
    description = "Authenticated like a CONNECT: `Authorization: Basic` of the CONNECT user \
        name `did|hmac-sha256|ts` and its password (a fresh `ts` per request). Records what the \
        device runs; a device whose update was under way and that now runs the campaign's \
        version has succeeded. Answers the manifest to install, or 204 when there is none.",
    params(CheckQuery),
    responses((status = 200, description = "a manifest to install", body = ManifestOut),
        (status = 204, description = "nothing to install"), DeviceErrors),
    security(("device" = [])))]
async fn device_check(
    State(s): State<AppState>,
    DeviceCaller(dev): DeviceCaller,
    Q(q): Q<CheckQuery>,
) -> Result<Response, Error> {
    let check = Check {
        target: q.target,
        version: q.version,
        sequence: q.sequence,
        hardware_version: q.hardware_version,
    };
    match s.core.ota_check(&dev, &check).await? {
        Some(m) => Ok(Json::<Manifest>(m).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// A progress report.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // only described: `rampart_proto::ota::Status` reads it
#[schema(as = OtaStatus, example = json!({"campaign_id": "cmp_a1b2c3d4e5f6g7h8i9j0",
    "state": "downloading", "bytes": 65536}))]
pub(crate) struct StatusBody {
    campaign_id: String,
    /// `notified`, `downloading`, `downloaded`, `verified`, `applying` or `failed` (success
    /// comes from the next check naming the new version)
    state: String,
    reason: Option<String>,
    bytes: Option<u64>,
}

#[utoipa::path(post, path = "/v1/device/ota/status", tag = "device-ota",
    summary = "A device's progress report (HTTPS devices)",
    description = "As `dev/{did}/ota/status` over MQTT. States only move forward, or to \
        `failed`; `succeeded` is refused (400): an update succeeds when the device checks again \
        running the new version.",
    request_body = StatusBody,
    responses((status = 204, description = "recorded"), DeviceStatusErrors),
    security(("device" = [])))]
async fn device_status(
    State(s): State<AppState>,
    DeviceCaller(dev): DeviceCaller,
    Body(st): Body<Status>,
) -> Result<StatusCode, Error> {
    s.core.ota_status(&dev, &st).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed grant in a manifest's URL.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadQuery {
    did: String,
    expires: i64,
    sig: String,
}

/// A single `bytes=` range of a file of `size` bytes: `Ok(None)` for no (or an ignorable)
/// header, `Err` for one that cannot be satisfied.
fn parse_range(h: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: answered whole, as RFC 9110 allows.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start > end {
            return Err(());
        }
        (start, end)
    };
    if size == 0 || range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

#[utoipa::path(get, path = "/v1/device/ota/firmware/{firmware_id}", tag = "device-ota",
    summary = "Download an image (the URL of a manifest)",
    description = "Authenticated like `GET /v1/device/ota`; the URL is good only for the device \
        it was issued to and until `expires` (403 otherwise). Honours one `Range: bytes=` range \
        (206 with `Content-Range`), so a cut download resumes where it stopped; 416 for a range \
        past the end.",
    params(("firmware_id" = String, Path, description = "the image"), DownloadQuery),
    responses((status = 200, description = "the whole image",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "the requested range, with `Content-Range`",
            content_type = "application/octet-stream", body = Vec<u8>),
        DownloadErrors),
    security(("device" = [])))]
async fn device_download(
    State(s): State<AppState>,
    DeviceCaller(dev): DeviceCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Q(q): Q<DownloadQuery>,
) -> Result<Response, Error> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let dl = s
        .core
        .ota_download(&dev, &id, &q.did, q.expires, &q.sig)
        .await?;
    let range = parse_range(headers.get(header::RANGE), dl.size).map_err(|_| {
        Error::new(
            crate::error::ErrorCode::RangeNotSatisfiable,
            format!("the range is outside the image's {} bytes", dl.size),
        )
    })?;
    let (start, end) = range.unwrap_or((0, dl.size.saturating_sub(1)));
    let len = if dl.size == 0 { 0 } else { end - start + 1 };
    let mut file = tokio::fs::File::open(&dl.path).await.map_err(|e| {
        tracing::error!(error = %e, sha256 = %dl.sha256, "firmware file missing");
        Error::new(crate::error::ErrorCode::Internal, "internal error")
    })?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| Error::new(crate::error::ErrorCode::Internal, "internal error"))?;
    // Streamed in 64 KiB reads: a thousand downloads hold a thousand small buffers, not images.
    let stream = futures_util::stream::unfold((file, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes_of(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", dl.sha256)) {
        h.insert(header::ETAG, v);
    }
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", dl.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(resp)
}

fn bytes_of(v: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=0-3")), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some(&h("bytes=4-")), 10), Ok(Some((4, 9))));
        assert_eq!(parse_range(Some(&h("bytes=-3")), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some(&h("bytes=5-100")), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some(&h("bytes=10-")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=5-2")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=0-1,4-5")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("items=0-1")), 10), Ok(None));
    }
}

// ---- the enterprise API ----

/// Where a device stands in OTA.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "k3v0d6x1q9m2b7c4n8zt", "running": [{"target": "module",
    "version": "2.0.0", "sequence": 2, "hardware_version": "B1", "checked_at": 1765000420000_i64}],
    "campaigns": [{"campaign_id": "cmp_a1b2c3d4e5f6g7h8i9j0", "firmware_id": "fw_k2j4h6g8f0d2s4a6q8w0",
    "campaign_state": "running", "stage": 1, "state": "succeeded", "bytes": 49152, "reason": null,
    "updated_at": 1765000420000_i64}]}))]
pub(crate) struct DeviceOtaOut {
    did: String,
    /// what the device said it runs at its last check, per target
    #[schema(value_type = Vec<Object>)]
    running: Vec<rampart_core::ota::device::Running>,
    /// its parts in campaigns, newest first (at most 20): `state` as in a campaign's `counts`
    /// (or `pending`), `campaign_state` the campaign's
    #[schema(value_type = Vec<Object>)]
    campaigns: Vec<rampart_core::ota::device::DevicePart>,
}

crate::signed_errors!(EnterpriseOtaErrors: Forbidden, NotFound);

#[utoipa::path(get, path = "/v1/enterprise/devices/{did}/ota", tag = "enterprise api",
    summary = "A device's firmware and update progress (scope `read`)",
    description = "What the device runs (per target, from its last check) and its parts in \
        update campaigns with their states. Audited (`enterprise.device_read`). The event stream \
        carries each move as an `ota_status` event.",
    responses((status = 200, description = "the device's OTA state", body = DeviceOtaOut),
        EnterpriseOtaErrors),
    security(("access_key" = [])))]
async fn enterprise_device_ota(
    State(s): State<AppState>,
    Path(did): Path<String>,
    k: crate::extract::EnterpriseKey,
) -> Result<Json<DeviceOtaOut>, Error> {
    let did = super::parse_did(&did)?;
    let v = s.core.key_device_ota(&k.key, did.as_str()).await?;
    Ok(Json(DeviceOtaOut {
        did: v.did,
        running: v.running,
        campaigns: v.campaigns,
    }))
}
