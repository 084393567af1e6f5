//! Products: create, list and read them, their allowlist of hardware ids (one by one or as an
//! uploaded file), their secret and its rotation, and batches of factory identities.
//!
//! Who may manage which product is `rampart_core::tenancy`'s decision; this module only asks.

use super::{page_of, parse_pk, Paging};
use crate::extract::{client_ip, Body, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use rampart_core::products::NewProduct;
use rampart_proto::ids::ProductKey;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/products", post(create_product).get(list_products))
        .described("/v1/products/{product_key}", get(get_product))
        .described("/v1/products/{product_key}/allowlist", post(allowlist_add))
        .described(
            "/v1/products/{product_key}/allowlist/file",
            post(allowlist_upload),
        )
        .described("/v1/products/{product_key}/secret", get(product_secret))
        .described(
            "/v1/products/{product_key}/secret/rotate",
            post(rotate_product_secret),
        )
        .described(
            "/v1/products/{product_key}/factory-batches",
            post(factory_issue),
        )
}

/// The body is a `NewProduct` plus an optional `owner` (see `rampart_core::tenancy::OwnerSpec`).
async fn create_product(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Body(mut v): Body<Value>,
) -> Result<Response, Error> {
    let invalid =
        |e: serde_json::Error| Error::new(crate::error::ErrorCode::InvalidJson, e.to_string());
    let owner = match v.as_object_mut().and_then(|o| o.remove("owner")) {
        Some(o) => Some(serde_json::from_value(o).map_err(invalid)?),
        None => None,
    };
    let p: NewProduct = serde_json::from_value(v).map_err(invalid)?;
    let created = s
        .core
        .create_product_as(&m.caller(), p, owner, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_products(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<Paging>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_products_as(&m.caller(), (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn get_product(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    s.core
        .authorize_product(&m.caller(), pk.as_str(), rampart_core::tenancy::Act::Read)
        .await?;
    let p = s.core.product(pk.as_str()).await?;
    Ok(Json(&*p).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowlistBody {
    hardware_ids: Vec<String>,
}

/// The product `pk` names, once the caller is known to be allowed to manage it.
async fn managed_product(
    s: &AppState,
    m: &Manager,
    pk: &str,
) -> Result<(ProductKey, rampart_core::tenancy::Caller), Error> {
    let pk = parse_pk(pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(&caller, pk.as_str(), rampart_core::tenancy::Act::Manage)
        .await?;
    Ok((pk, caller))
}

async fn allowlist_add(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<AllowlistBody>,
) -> Result<Json<Value>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let added = s
        .core
        .allowlist_add(pk.as_str(), &b.hardware_ids, &caller.actor())
        .await?;
    Ok(Json(
        json!({"added": added, "submitted": b.hardware_ids.len()}),
    ))
}

/// An allowlist file: the caller's right to manage the product is checked before the body is
/// read; the body is read up to the upload cap (413 beyond it, without reading further).
async fn allowlist_upload(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let cap = s.core.config().uploads.max_allowlist_bytes;
    let bytes = read_capped(body, &headers, cap).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let up = s
        .core
        .allowlist_upload(pk.as_str(), declared, bytes, &caller.actor())
        .await?;
    Ok(Json(json!(up)))
}

/// A request body of at most `cap` bytes: 413 `PAYLOAD_TOO_LARGE` as soon as the declared length
/// or the bytes received pass it.
async fn read_capped(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    cap: usize,
) -> Result<Vec<u8>, Error> {
    let too_large = || {
        Error::from(rampart_core::Error::TooLarge(format!(
            "the body may hold at most {cap} bytes"
        )))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("request body: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

// ---- product secrets (owners and the operator) ----

async fn product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<Value>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .read_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(
        json!({"product_key": pk.as_str(), "product_secret": secret.expose()}),
    ))
}

async fn rotate_product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<Value>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .rotate_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(
        json!({"product_key": pk.as_str(), "product_secret": secret.expose()}),
    ))
}

/// Largest factory batch issued through the API (the CLI issues larger ones).
const API_MAX_BATCH: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    count: usize,
}

async fn factory_issue(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<BatchBody>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(&caller, pk.as_str(), rampart_core::tenancy::Act::Secrets)
        .await?;
    if b.count == 0 || b.count > API_MAX_BATCH {
        return Err(Error::invalid(format!("count must be 1..={API_MAX_BATCH}")));
    }
    let (batch_id, ids) = s
        .core
        .factory_issue(pk.as_str(), b.count, &caller.actor())
        .await?;
    let identities: Vec<Value> = ids
        .iter()
        .map(|f| json!({"serial": f.serial, "device_secret": f.secret.expose()}))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"batch_id": batch_id, "identities": identities})),
    )
        .into_response())
}
