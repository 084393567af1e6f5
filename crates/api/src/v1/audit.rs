//! Audit queries: an enterprise's entries for its owners and admins (and the operator), and a
//! key's view of its enterprise's entries over a signed request.
//!
//! What each caller may see is `rampart_core`'s decision (tenant isolation); nothing is
//! filtered here. Each handler's `#[utoipa::path]` makes its part of the OpenAPI document.

use super::schemas::{AuditEntrySchema, Page, PageParams, Sorted};
use super::{page_of, PageQuery};
use crate::extract::{Admin, EnterpriseKey, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use rampart_core::audit::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(enterprise_audit))
        .routes(routes!(audit))
        .routes(routes!(admin_audit))
        .routes(routes!(admin_audit_verify))
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
    /// Only on the operator's query: every other one is one tenant's already.
    tenant: Option<String>,
}

impl AuditQuery {
    /// Refuse `tenant` where the tenant is given by the path or the key.
    fn without_tenant(self) -> Result<AuditQuery, Error> {
        match self.tenant {
            Some(_) => Err(Error::invalid(
                "unknown query parameter `tenant`: this log is one enterprise's",
            )),
            None => Ok(self),
        }
    }

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
    let (f, page, limit) = q.without_tenant()?.resolve()?;
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
    let (f, page, limit) = k.query::<AuditQuery>()?.without_tenant()?.resolve()?;
    let (rows, total) = s
        .core
        .key_audit(&k.key, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

crate::errors!(AdminAuditErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(VerifyErrors: Unauthorized, Internal);

/// The operator's tenant filter (with [`AuditParams`] and [`PageParams`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only described: `AuditQuery` reads it
pub(crate) struct TenantParam {
    /// only entries of this enterprise (`ent_...`); absent: every entry, with a tenant or not
    tenant: Option<String>,
}

/// Every audit entry, for the operator.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "operator",
    summary = "The whole audit log, newest first",
    params(AuditParams, TenantParam, PageParams),
    responses((status = 200, description = "a page of audit entries", body = Page<AuditEntrySchema>),
        AdminAuditErrors),
    security(("admin" = [])))]
async fn admin_audit(
    State(s): State<AppState>,
    _admin: Admin,
    Q(q): Q<AuditQuery>,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let tenant = q.tenant.clone().filter(|t| !t.is_empty());
    let (f, page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .operator_audit(tenant.as_deref(), &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

/// The outcome of recomputing the audit chain (what `rampart audit verify` prints).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"intact": true, "entries": 42, "unchained": 0, "last_id": 42,
    "first_bad": null}))]
pub(crate) struct ChainStatus {
    /// every chained entry matches its link and the chain head
    intact: bool,
    /// chained entries verified (before the first bad one)
    entries: u64,
    /// entries from before the chain existed, not verifiable
    unchained: u64,
    /// the last verified entry's id
    #[schema(required = true)]
    last_id: Option<i64>,
    /// the first entry that does not match, and why
    #[schema(required = true)]
    first_bad: Option<ChainBreak>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ChainBreak {
    id: i64,
    reason: String,
}

/// Recompute the chain now, as `rampart audit verify` does, over the API.
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "operator",
    summary = "Verify the audit hash chain",
    description = "Recomputes every link from the first entry (a read of the whole log). A broken \
        chain is a 200 with `intact: false` and the first entry that does not match.",
    responses((status = 200, description = "the verification's outcome", body = ChainStatus),
        VerifyErrors),
    security(("admin" = [])))]
async fn admin_audit_verify(
    State(s): State<AppState>,
    _admin: Admin,
) -> Result<axum::Json<ChainStatus>, Error> {
    let r = s.core.verify_audit_chain().await?;
    Ok(axum::Json(ChainStatus {
        intact: r.first_bad.is_none(),
        entries: r.entries,
        unchained: r.unchained,
        last_id: r.last_id,
        first_bad: r.first_bad.map(|b| ChainBreak {
            id: b.id,
            reason: b.reason,
        }),
    }))
}
