//! Certificate devices: the CAs a product trusts for its devices' client certificates, and the
//! revocation lists that withdraw certificates (closing the live sessions they served). What a
//! certificate must be to name a device is `rampart_core::device::certificates`'s rule.

use super::parse_pk;
use crate::extract::{client_ip, Body, Manager};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(add_ca, list_cas))
        .routes(routes!(delete_ca))
        .routes(routes!(put_crl))
}

/// A PEM document: one CA certificate, or one X.509 CRL.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"pem": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"}))]
pub(crate) struct PemBody {
    /// at most 1 MiB
    pem: String,
}

/// A CA certificate a product trusts.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ca_id": "ca_1f2e3d4c5b6a7980",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "subject": "CN=Acme Device CA, O=Acme", "not_after": 1893456000000_i64,
    "created_at": 1765000000000_i64}))]
pub(crate) struct CaCertificate {
    ca_id: String,
    /// SHA-256 of the certificate's DER, lowercase hex
    sha256: String,
    /// RFC 4514
    subject: String,
    #[schema(value_type = super::schemas::Millis)]
    not_after: i64,
    #[schema(value_type = super::schemas::Millis)]
    created_at: i64,
}

impl From<rampart_core::device::certificates::CaView> for CaCertificate {
    fn from(c: rampart_core::device::certificates::CaView) -> Self {
        CaCertificate {
            ca_id: c.ca_id,
            sha256: c.sha256,
            subject: c.subject,
            not_after: c.not_after,
            created_at: c.created_at,
        }
    }
}

/// A product's CAs.
#[derive(Serialize, ToSchema)]
pub(crate) struct CaCertificateList {
    data: Vec<CaCertificate>,
}

/// What a posted revocation list changed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ca_id": "ca_1f2e3d4c5b6a7980", "crl_number": "2",
    "revoked": 1, "closed_sessions": 1}))]
pub(crate) struct CrlOutcome {
    /// the CA that signed the list
    ca_id: String,
    /// decimal
    crl_number: String,
    /// certificates the list revokes
    #[schema(minimum = 0)]
    revoked: usize,
    /// live sessions of devices with a revoked certificate, closed now
    #[schema(minimum = 0)]
    closed_sessions: usize,
}

crate::errors!(AddErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, NotFound, Conflict, Internal);
crate::errors!(ListErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(DeleteErrors: Unauthorized, Forbidden, NotFound, Internal);

#[utoipa::path(post, path = "/v1/products/{product_key}/ca-certificates", tag = "products",
    summary = "Trust a CA for the product's device certificates",
    description = "A CA certificate (PEM, `basicConstraints` cA set, not expired). Devices of a \
        product with `identity.x509` then connect over TLS with a client certificate issued by it, \
        whose subject CN is the device's hardware id. Owners only; audited (`product.ca_add`). \
        409 when the product trusts this certificate already.",
    request_body = PemBody,
    responses((status = 201, description = "the CA", body = CaCertificate), AddErrors),
    security(("admin" = []), ("developer" = [])))]
async fn add_ca(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
    Body(b): Body<PemBody>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let ca = s
        .core
        .add_product_ca(&m.caller(), pk.as_str(), &b.pem, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(CaCertificate::from(ca))).into_response())
}

#[utoipa::path(get, path = "/v1/products/{product_key}/ca-certificates", tag = "products",
    summary = "The CAs a product trusts",
    responses((status = 200, description = "the CAs, oldest first", body = CaCertificateList),
        ListErrors),
    security(("admin" = []), ("developer" = [])))]
async fn list_cas(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Json<CaCertificateList>, Error> {
    let pk = parse_pk(&pk)?;
    let cas = s.core.list_product_cas(&m.caller(), pk.as_str()).await?;
    Ok(Json(CaCertificateList {
        data: cas.into_iter().map(CaCertificate::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/products/{product_key}/ca-certificates/{ca_id}", tag = "products",
    summary = "Stop trusting a CA",
    description = "Its revocation list goes with it; devices whose certificate it issued are \
        refused from their next connection. Owners only; audited (`product.ca_delete`).",
    responses((status = 200, description = "the removed CA", body = CaCertificate), DeleteErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_ca(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((pk, ca_id)): Path<(String, String)>,
) -> Result<Json<CaCertificate>, Error> {
    let pk = parse_pk(&pk)?;
    let ca = s
        .core
        .delete_product_ca(&m.caller(), pk.as_str(), &ca_id, client_ip(&addr))
        .await?;
    Ok(Json(CaCertificate::from(ca)))
}

#[utoipa::path(post, path = "/v1/products/{product_key}/crl", tag = "products",
    summary = "Post a CA's revocation list",
    description = "A PEM X.509 CRL signed by one of the product's CAs. It replaces that CA's \
        list when its CRL number is higher (409 otherwise). The live sessions of devices whose \
        certificate it revokes are closed at once (MQTT 5: DISCONNECT 0x98); their next \
        connection is refused. Owners only; audited (`product.crl`).",
    request_body = PemBody,
    responses((status = 200, description = "what changed", body = CrlOutcome), AddErrors),
    security(("admin" = []), ("developer" = [])))]
async fn put_crl(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
    Body(b): Body<PemBody>,
) -> Result<Json<CrlOutcome>, Error> {
    let pk = parse_pk(&pk)?;
    let o = s
        .core
        .put_product_crl(&m.caller(), pk.as_str(), &b.pem, client_ip(&addr))
        .await?;
    Ok(Json(CrlOutcome {
        ca_id: o.ca_id,
        crl_number: o.crl_number,
        revoked: o.revoked,
        closed_sessions: o.closed_sessions,
    }))
}
