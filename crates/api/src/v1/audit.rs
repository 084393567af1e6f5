//! Audit queries: an enterprise's entries for its owners and admins (and the operator), and a
//! key's view of its enterprise's entries over a signed request.
//!
//! What each caller may see is `rampart_core`'s decision (tenant isolation); nothing is
//! filtered here.

use super::{page_of, PageQuery};
use crate::extract::{EnterpriseKey, Manager, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Json;
use rampart_core::audit::AuditFilter;
use serde::Deserialize;
use serde_json::Value;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/enterprises/{id}/audit", get(enterprise_audit))
        .described("/v1/enterprise/audit", get(audit))
}

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
async fn enterprise_audit(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<Value>, Error> {
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

async fn audit(State(s): State<AppState>, k: EnterpriseKey) -> Result<Json<Value>, Error> {
    let (f, page, limit) = k.query::<AuditQuery>()?.resolve()?;
    let (rows, total) = s
        .core
        .key_audit(&k.key, &f, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}
