//! Products: create, list and read them, their allowlist of hardware ids (one by one or as an
//! uploaded file), their secret and its rotation, and batches of factory identities. Each
//! handler's `#[utoipa::path]` and answer types make its part of the OpenAPI document.
//!
//! Who may manage which product is `rampart_core::access::tenancy`'s decision; this module only asks.

use super::schemas::{DataPoint, IdentityModes, Millis, Page, PageParams};
use super::{parse_pk, Paging};
use crate::extract::{client_ip, read_capped, Body, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::tenancy::OwnerSpec;
use rampart_core::device::products::NewProduct;
use rampart_proto::ids::ProductKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, delete_product))
        .routes(routes!(allowlist_add))
        .routes(routes!(allowlist_upload))
        .routes(routes!(product_secret))
        .routes(routes!(rotate_product_secret))
        .routes(routes!(set_identity))
        .routes(routes!(factory_issue))
        .routes(routes!(preregister_device))
}

// ---- the answers and bodies ----

/// A new product: its name, identity modes, report limit, data-point model and owner.
// The handler reads it with `new_product`; a test holds the two together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewProduct, example = json!({"name": "Lamp", "identity": {"dynamic_registration": true},
    "report_limit_per_min": 600, "datapoints": [{"name": "power", "type": "bool", "writable": true},
    {"name": "overheat", "type": "bool", "class": "alert"}], "owner": "personal"}))]
#[allow(dead_code)] // read only by the test that holds it to `new_product`
pub(crate) struct NewProductBody {
    name: String,
    #[schema(value_type = IdentityModes, required = false)]
    identity: Option<rampart_core::device::products::IdentityModes>,
    #[schema(value_type = i64, required = false, default = 1800)]
    report_limit_per_min: Option<i64>,
    #[schema(value_type = Vec<DataPoint>, required = false)]
    datapoints: Option<Vec<rampart_proto::model::DataPoint>>,
    enterprise_id: Option<String>,
    /// who owns the product (default: the calling developer; the operator's own product for the admin)
    #[schema(value_type = Owner, required = false)]
    owner: Option<OwnerSpec>,
}

/// Who owns a product: `"personal"`, `{"enterprise_id"}` or `{"developer_id"}`.
// `rampart_core::access::tenancy::OwnerSpec` as JSON.
#[derive(ToSchema)]
#[allow(dead_code)] // only described
#[schema(rename_all = "snake_case")]
pub(crate) enum Owner {
    Personal,
    EnterpriseId(String),
    DeveloperId(String),
}

/// The answer to product creation.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedProduct, example = json!({"product_key": "pk_1a2b3c", "product_secret": "4f1e..."}))]
pub(crate) struct CreatedProduct {
    product_key: String,
    /// only for a caller who may see secrets
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    product_secret: Option<String>,
}

/// A product as everyone who may read it sees it (no secret).
#[derive(Serialize, ToSchema)]
#[schema(as = Product, example = json!({"product_key": "pk_1a2b3c", "name": "Lamp",
    "identity": {"dynamic_registration": true, "allowlist": false}, "report_limit_per_min": 1800,
    "datapoints": [{"name": "power", "type": "bool", "writable": true, "sensitivity": "public"}],
    "enterprise_id": null, "created_at": 1765000000000_i64}))]
pub(crate) struct ProductView {
    product_key: String,
    name: String,
    #[schema(value_type = IdentityModes)]
    identity: rampart_core::device::products::IdentityModes,
    report_limit_per_min: i64,
    #[schema(value_type = Vec<DataPoint>)]
    datapoints: rampart_proto::model::Model,
    #[schema(required = true)]
    enterprise_id: Option<String>,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<&rampart_core::device::products::ProductInfo> for ProductView {
    fn from(p: &rampart_core::device::products::ProductInfo) -> ProductView {
        ProductView {
            product_key: p.product_key.clone(),
            name: p.name.clone(),
            identity: p.identity,
            report_limit_per_min: p.report_limit_per_min,
            datapoints: p.datapoints.clone(),
            enterprise_id: p.enterprise_id.clone(),
            created_at: p.created_at,
        }
    }
}

/// A product's secret.
#[derive(Serialize, ToSchema)]
#[schema(as = ProductSecret, example = json!({"product_key": "pk_1a2b3c", "product_secret": "4f1e..."}))]
pub(crate) struct ProductSecret {
    product_key: String,
    product_secret: String,
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidDatapoint, Forbidden, NotFound, Internal);
crate::errors!(ListErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(ReadErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(BatchErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, Conflict, NotFound, Internal);
crate::errors!(AllowlistErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Internal);
crate::errors!(UploadErrors: Unauthorized, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Internal);
crate::errors!(IdentityErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Internal);

/// `POST /v1/products`'s body: the product and, apart, its `owner`.
fn new_product(mut v: Value) -> Result<(NewProduct, Option<OwnerSpec>), Error> {
    let invalid = |e: serde_json::Error| Error::invalid_json(e.to_string());
    let owner = match v.as_object_mut().and_then(|o| o.remove("owner")) {
        Some(o) => Some(serde_json::from_value(o).map_err(invalid)?),
        None => None,
    };
    let p: NewProduct = serde_json::from_value(v).map_err(invalid)?;
    Ok((p, owner))
}

/// The body is a `NewProduct` plus an optional `owner` (see `rampart_core::access::tenancy::OwnerSpec`).
#[utoipa::path(post, path = "/v1/products", tag = "products", summary = "Create a product",
    description = "The product secret is answered only to a caller who may see secrets.",
    request_body = NewProductBody,
    responses((status = 201, description = "the product", body = CreatedProduct), CreateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn create_product(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Body(v): Body<Value>,
) -> Result<Response, Error> {
    let (p, owner) = new_product(v)?;
    let created = s
        .core
        .create_product_as(&m.caller(), p, owner, client_ip(&addr))
        .await?;
    let created = CreatedProduct {
        product_key: created.product_key,
        product_secret: created.product_secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/v1/products", tag = "products",
    summary = "List the products the caller may read", params(PageParams),
    responses((status = 200, description = "a page of products (no secrets)", body = Page<ProductView>),
        ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_products(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<Paging>,
) -> Result<Json<Page<ProductView>>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_products_as(&m.caller(), (page - 1) * limit, limit)
        .await?;
    let rows = rows.iter().map(ProductView::from).collect();
    Ok(Json(Page::of(rows, page, limit, total)))
}

#[utoipa::path(get, path = "/v1/products/{product_key}", tag = "products",
    summary = "A product and its data points",
    responses((status = 200, description = "the product", body = ProductView), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn get_product(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    s.core
        .authorize_product(
            &m.caller(),
            pk.as_str(),
            rampart_core::access::tenancy::Act::Read,
        )
        .await?;
    let p = s.core.product(pk.as_str()).await?;
    Ok(Json(ProductView::from(&*p)).into_response())
}

/// What deleting a product removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"product_key": "pk_1a2b3c", "deleted": {"devices": 120, "history": 88000,
    "bindings": 95, "firmware": 3, "campaigns": 2, "factory": 500, "other": 41}}))]
pub(crate) struct ProductDeleted {
    product_key: String,
    deleted: DeletedOfProduct,
}

/// Rows removed with a product, by kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedOfProduct {
    devices: u64,
    /// history entries of its devices
    history: u64,
    /// bindings, shares and share invitations of its devices
    bindings: u64,
    /// firmware images (a file goes when no other record uses it)
    firmware: u64,
    campaigns: u64,
    /// factory identities, batches and credentials, allowlisted ids
    factory: u64,
    /// commands, desired states, certificate records, CAs and CRLs, the OTA key, access-key
    /// links, event subscriptions, queued events, dead letters
    other: u64,
}

#[utoipa::path(delete, path = "/v1/products/{product_key}", tag = "products",
    summary = "Delete a product with its devices and everything recorded about them",
    description = "Audited (`product.delete`, with the counts). Needs the secrets right (the \
        product's owner, or an operator). Every device of the product is refused at CONNECT from the \
        first moment and its live session closed (DISCONNECT `0x98`); then the product, its devices \
        with their secrets, state, history, bindings and shares, its firmware, campaigns, OTA key, \
        CAs and CRLs, factory identities, batches and credentials and its allowlist are removed in one \
        transaction. There is no undo.",
    responses((status = 200, description = "deleted; what was removed", body = ProductDeleted),
        ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_product(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let e = s
        .core
        .erase_product(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(ProductDeleted {
        product_key: pk.as_str().to_owned(),
        deleted: DeletedOfProduct {
            devices: e.devices,
            history: e.history,
            bindings: e.bindings,
            firmware: e.firmware,
            campaigns: e.campaigns,
            factory: e.factory,
            other: e.other,
        },
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"hardware_ids": ["AA:BB:CC:DD:EE:01"]}))]
pub(crate) struct AllowlistBody {
    #[schema(min_items = 1, max_items = 100000)]
    hardware_ids: Vec<String>,
}

/// How many of the submitted hardware ids were new.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"added": 1, "submitted": 2}))]
pub(crate) struct AllowlistAdded {
    added: u64,
    submitted: usize,
}

/// An uploaded allowlist file, kept by its SHA-256.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "size": 18, "submitted": 1, "added": 1}))]
pub(crate) struct AllowlistUploaded {
    sha256: String,
    size: u64,
    submitted: usize,
    added: u64,
}

/// The product `pk` names, once the caller is known to be allowed to manage it.
async fn managed_product(
    s: &AppState,
    m: &Manager,
    pk: &str,
) -> Result<(ProductKey, rampart_core::access::tenancy::Caller), Error> {
    let pk = parse_pk(pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(
            &caller,
            pk.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    Ok((pk, caller))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/allowlist", tag = "products",
    summary = "Add hardware ids to the product's allowlist", request_body = AllowlistBody,
    responses((status = 200, description = "how many were new", body = AllowlistAdded),
        AllowlistErrors),
    security(("admin" = []), ("developer" = [])))]
async fn allowlist_add(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<AllowlistBody>,
) -> Result<Json<AllowlistAdded>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let added = s
        .core
        .allowlist_add(pk.as_str(), &b.hardware_ids, &caller.actor())
        .await?;
    Ok(Json(AllowlistAdded {
        added,
        submitted: b.hardware_ids.len(),
    }))
}

/// An allowlist file: the caller's right to manage the product is checked before the body is
/// read; the body is read up to the upload cap (413 beyond it, without reading further).
#[utoipa::path(post, path = "/v1/products/{product_key}/allowlist/file", tag = "products",
    summary = "Upload an allowlist file (CSV or one hardware id per line)",
    request_body(description = "UTF-8 text: one hardware id per line, or CSV whose first field is \
        the id; blank lines, `#` comments and a first line naming the column are skipped. At most \
        `uploads.max_allowlist_bytes` (2 MiB) and 100,000 ids.",
        content((String = "text/csv"), (String = "text/plain"))),
    responses((status = 200, description = "the file is kept by its SHA-256; how many ids were new",
        body = AllowlistUploaded), UploadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn allowlist_upload(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<AllowlistUploaded>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let cap = s.core.config().uploads.max_allowlist_bytes;
    let bytes = read_capped(body, &headers, cap, "the body").await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let up = s
        .core
        .allowlist_upload(pk.as_str(), declared, bytes, &caller.actor())
        .await?;
    Ok(Json(AllowlistUploaded {
        sha256: up.sha256,
        size: up.size,
        submitted: up.submitted,
        added: up.added,
    }))
}

// ---- product secrets (owners and the operator) ----

#[utoipa::path(get, path = "/v1/products/{product_key}/secret", tag = "products",
    summary = "Read the product secret",
    description = "Audited. Needs the secrets right on the product.",
    responses((status = 200, description = "the secret", body = ProductSecret), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<ProductSecret>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .read_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(ProductSecret {
        product_key: pk.as_str().to_owned(),
        product_secret: secret.expose().to_owned(),
    }))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/secret/rotate", tag = "products",
    summary = "Rotate the product secret", description = "Audited. Answers the new secret.",
    responses((status = 200, description = "the new secret", body = ProductSecret), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn rotate_product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<ProductSecret>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .rotate_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(ProductSecret {
        product_key: pk.as_str().to_owned(),
        product_secret: secret.expose().to_owned(),
    }))
}

#[utoipa::path(put, path = "/v1/products/{product_key}/identity", tag = "products",
    summary = "Replace a product's identity modes",
    description = "Who may register (`dynamic_registration`, `allowlist`), whether devices may \
        connect with a static password over TLS (`static_password`), with a client certificate \
        (`x509`, `x509_jit`, `allow_rsa1024`: docs/protocol.md) or through the encrypted session \
        layer (`secure_session`). Every mode left out is false; `x509_jit` and `allow_rsa1024` \
        without `x509` answer 400. CONNECTs from now on see the new modes; live sessions stay. Audited \
        (`product.identity`).",
    request_body = IdentityModes,
    responses((status = 200, description = "the product", body = ProductView), IdentityErrors),
    security(("admin" = []), ("developer" = [])))]
async fn set_identity(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
    Body(modes): Body<rampart_core::device::products::IdentityModes>,
) -> Result<Json<ProductView>, Error> {
    let pk = parse_pk(&pk)?;
    let p = s
        .core
        .set_product_identity(&m.caller(), pk.as_str(), modes, client_ip(&addr))
        .await?;
    Ok(Json(ProductView::from(&*p)))
}

/// A device to pre-register with the public key made on it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewKeyDevice, example = json!({"hardware_id": "AA:BB:CC:DD:EE:01",
    "public_key": {"ed25519": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}))]
pub(crate) struct NewKeyDevice {
    /// 1-64 printable ASCII, no space, `&`, `=` or `|`; unique in the product
    #[schema(min_length = 1, max_length = 64)]
    hardware_id: String,
    public_key: super::schemas::DevicePublicKey,
}

/// A pre-registered device's id.
#[derive(Serialize, ToSchema)]
#[schema(as = KeyDevice, example = json!({"did": "k3v0d6x1q9m2b7c4n8zt"}))]
pub(crate) struct KeyDevice {
    did: String,
}

crate::errors!(PreregisterErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidRequest, Forbidden, NotFound, Conflict, Internal);

#[utoipa::path(post, path = "/v1/products/{product_key}/devices", tag = "products",
    summary = "Pre-register a device with its Ed25519 public key",
    description = "For devices that make their key pair themselves: the private key never leaves \
        the device, which connects over MQTT 5 by answering the `rampart-ed25519` challenge \
        (docs/protocol.md). Needs the right to manage the product. The device gets a passcode \
        for binding (`GET /v1/devices/{did}/passcode`) and no secret anyone is told. A \
        `hardware_id` already registered in the product is 409 `CONFLICT`; a key that is not \
        base64, not 32 bytes or not a valid Ed25519 point is 400 `INVALID_REQUEST`. Audited \
        (`device.register`, detail `method=ed25519`).",
    request_body = NewKeyDevice,
    responses((status = 201, description = "the device's id", body = KeyDevice),
        PreregisterErrors),
    security(("admin" = []), ("developer" = [])))]
async fn preregister_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
    Body(b): Body<NewKeyDevice>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let did = s
        .core
        .preregister_device(
            &m.caller(),
            pk.as_str(),
            &b.hardware_id,
            &b.public_key.ed25519,
            client_ip(&addr),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(KeyDevice { did })).into_response())
}

/// Largest factory batch issued through the API (the CLI issues larger ones).
pub(crate) const API_MAX_BATCH: usize = 10_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"count": 100}))]
pub(crate) struct BatchBody {
    #[schema(minimum = 1, maximum = 10000)]
    pub(crate) count: usize,
}

/// A batch of factory identities; the device secrets are shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"batch_id": "fb_1", "identities": [{"serial": "S0001", "device_secret": "9c0e..."}]}))]
pub(crate) struct FactoryBatch {
    batch_id: String,
    identities: Vec<FactoryIdentity>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FactoryIdentity {
    serial: String,
    device_secret: String,
}

impl FactoryBatch {
    /// The answer for a batch just issued (the only time its secrets are shown).
    pub(crate) fn issued(
        batch_id: String,
        ids: &[rampart_core::device::registry::FactoryIdentity],
    ) -> FactoryBatch {
        FactoryBatch {
            batch_id,
            identities: ids
                .iter()
                .map(|f| FactoryIdentity {
                    serial: f.serial.clone(),
                    device_secret: f.secret.expose().to_owned(),
                })
                .collect(),
        }
    }
}

#[utoipa::path(post, path = "/v1/products/{product_key}/factory-batches", tag = "products",
    summary = "Issue a batch of factory device identities", request_body = BatchBody,
    responses((status = 201, description = "the batch; the device secrets are shown once",
        body = FactoryBatch), BatchErrors),
    security(("admin" = []), ("developer" = [])))]
async fn factory_issue(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<BatchBody>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(
            &caller,
            pk.as_str(),
            rampart_core::access::tenancy::Act::Secrets,
        )
        .await?;
    if b.count == 0 || b.count > API_MAX_BATCH {
        return Err(Error::invalid(format!("count must be 1..={API_MAX_BATCH}")));
    }
    let (batch_id, ids) = s
        .core
        .factory_issue(pk.as_str(), b.count, &caller.actor())
        .await?;
    let batch = FactoryBatch::issued(batch_id, &ids);
    Ok((StatusCode::CREATED, Json(batch)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The documented body is what the handler reads: its example (which names every field)
    /// parses, as `NewProductBody` and through `new_product`, and so does a data point with
    /// every field the model has (`class` included).
    #[test]
    fn the_documented_new_product_is_what_the_handler_reads() {
        let schema = serde_json::to_value(NewProductBody::schema()).unwrap();
        let example = schema["example"].clone();
        assert!(example.is_object(), "{schema}");
        serde_json::from_value::<NewProductBody>(example.clone()).unwrap();
        let (p, owner) = new_product(example).unwrap();
        assert!(p.datapoints.iter().any(|d| d.class.is_some()));
        assert_eq!(owner, Some(OwnerSpec::Personal));
        let point = serde_json::to_value(DataPoint::schema()).unwrap()["example"].clone();
        let body = serde_json::json!({"name": "x", "datapoints": [point]});
        new_product(body).unwrap();
    }
}
