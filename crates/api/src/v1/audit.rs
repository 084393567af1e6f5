//! Audit queries: an enterprise's entries for its owners and admins (and the operator), and a
//! key's view of its enterprise's entries over a signed request.
//!
//! What each caller may see is `rampart_core`'s decision (tenant isolation); nothing is
//! filtered here. Each handler's `#[utoipa::path]` makes its part of the OpenAPI document.

use super::schemas::{AuditEntrySchema, Page, PageParams, Sorted};
use super::{page_of, PageQuery};
use crate::extract::{EnterpriseKey, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use rampart_core::audit::AuditFilter;
use serde::Deserialize;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(enterprise_audit))
        .routes(routes!(audit))
}

/// The filters of an audit query (with `page` and `limit`: [`AuditQuery`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only described: `AuditQuery` reads them
pub(crate) struct AuditParams {
    /// only entries of this actor id
    actor: Option<String>,
    /// only entries of this actor kind
    actor_kind: Option<String>,
    /// only entries of this action
    action: Option<String>,
    /// only entries with this target
    target: Option<String>,
    /// from this time (unix ms, inclusive)
    from: Option<i64>,
    /// up to this time (unix ms, inclusive)
    to: Option<i64>,
}

crate::errors!(EnterpriseAuditErrors: Unauthorized, InvalidRequest, Forbidden, NotFound, Internal);
crate::errors!(KeyAuditErrors: InvalidAuthorization, StaleTimestamp, SignatureMismatch,
    KeyDisabled, KeyExpired, EnterpriseSuspended, IpNotAllowed, NonceReused, PayloadTooLarge,
    InvalidRequest, Forbidden, Internal);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor_kind: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    page: Option<i64>,
    limit: Option<i64>,
}

impl AuditQuery {
    /// The filter, page and limit.
    fn resolve(self) -> Result<(AuditFilter, i64, i64), Error> {
        let (page, limit) = PageQuery::of(self.page, self.limit).resolve()?;
        let f = AuditFilter {
            actor_kind: self.actor_kind.unwrap_or_default(),
            actor_id: self.actor.unwrap_or_default(),
            action: self.action.unwrap_or_default(),
            target: self.target.unwrap_or_default(),
            from: self.from.unwrap_or(0),
            to: self.to,
        };
        Ok((f, page, limit))
    }
}

/// The enterprise's audit entries for its owners (and the operator), like `GET
/// /v1/enterprise/audit` for a key.
#[utoipa::path(get, path = "/v1/enterprises/{id}/audit", tag = "enterprises",
    summary = "An enterprise's audit entries, newest first",
    description = "For the enterprise's owners and the operator; its admins and observers get 403.",
    params(AuditParams, PageParams),
    responses((status = 200, description = "a page of audit entries", body = Page<AuditEntrySchema>),
        EnterpriseAuditErrors),
    security(("admin" = []), ("developer" = [])))]
async fn enterprise_audit(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    Q(q): Q<AuditQuery>,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let (f, page, limit) = q.resolve()?;
    s.core
        .authorize_enterprise(
            &m.caller(),
            &id,
            rampart_core::access::tenancy::Act::Members,
        )
        .await?;
    let (rows, total) = s
        .core
        .tenant_audit(&id, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

/// The key's enterprise's entries, over a signed request.
#[utoipa::path(get, path = "/v1/enterprise/audit", tag = "enterprise api",
    summary = "The enterprise's audit entries, newest first (scope `read`)",
    description = "Audited (`audit.read`).",
    params(AuditParams, PageParams),
    responses((status = 200, description = "a page of audit entries", body = Page<AuditEntrySchema>),
        KeyAuditErrors),
    security(("access_key" = [])))]
async fn audit(
    State(s): State<AppState>,
    k: EnterpriseKey,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let (f, page, limit) = k.query::<AuditQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .key_audit(&k.key, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}
