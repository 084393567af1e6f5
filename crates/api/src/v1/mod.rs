//! The `/v1` resources, one module per resource group, and what they share: paging, id parsing
//! and the device access check of every principal. Every answer is JSON; lists page with
//! `page`/`limit` and answer `{"data": [...], "meta": {"page", "limit", "total"}}`.
//!
//! Handlers map HTTP to `rampart_core` calls; no access rule is decided here (the core's
//! `tenancy` and `bindings` decide, the handlers ask).

use rampart_core::audit::action;
pub(crate) mod access_keys;
pub(crate) mod accounts;
pub(crate) mod activity;
pub(crate) mod admin_tokens;
pub(crate) mod audit;
pub(crate) mod bindings;
pub(crate) mod certificates;
pub(crate) mod developers;
pub(crate) mod devices;
pub(crate) mod enterprise_api;
pub(crate) mod enterprises;
pub(crate) mod export;
pub(crate) mod factory;
pub(crate) mod operators;
pub(crate) mod ota;
pub(crate) mod products;
pub(crate) mod schemas;
pub(crate) mod webhooks;

use crate::extract::{client_ip, Principal};
use crate::{AppState, ClientAddr, Error};
use axum::Extension;
use rampart_core::access::bindings::Need;
use rampart_core::audit::Actor;
use rampart_proto::ids::{Did, ProductKey};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Paging {
    page: Option<i64>,
    limit: Option<i64>,
    pub(crate) product_key: Option<String>,
}

/// The last page a list answers: `(page - 1) * limit` stays far inside `i64` (a larger page
/// overflowed it, which panicked the handler in a debug build).
pub(crate) const MAX_PAGE: i64 = 1_000_000;

impl Paging {
    /// `(page, limit)`: page 1..=[`MAX_PAGE`] (default 1), limit 1..=200 (default 50).
    pub(crate) fn resolve(&self) -> Result<(i64, i64), Error> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&page) || !(1..=200).contains(&limit) {
            return Err(Error::invalid(format!(
                "page must be 1..={MAX_PAGE} and limit 1..=200"
            )));
        }
        Ok((page, limit))
    }
}

/// `page` and `limit` alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

impl PageQuery {
    pub(crate) fn of(page: Option<i64>, limit: Option<i64>) -> PageQuery {
        PageQuery { page, limit }
    }

    pub(crate) fn resolve(&self) -> Result<(i64, i64), Error> {
        Paging {
            page: self.page,
            limit: self.limit,
            product_key: None,
        }
        .resolve()
    }
}

/// Check a principal's access to a device: the administrator sees every device; a user needs a
/// binding (none answers 404 like an unknown did).
/// A refusal is audited (`device.access`), so probing for devices leaves a trace.
pub(crate) async fn authorize(
    s: &AppState,
    p: &Principal,
    did: &str,
    need: Need,
    addr: &Option<Extension<ClientAddr>>,
) -> Result<Actor, Error> {
    match p {
        Principal::Admin(actor) => Ok(actor.clone()),
        Principal::Developer(d) => {
            let act = match need {
                Need::Read => rampart_core::access::tenancy::Act::Read,
                Need::Control | Need::Own => rampart_core::access::tenancy::Act::Manage,
            };
            let caller = rampart_core::access::tenancy::Caller::Developer(d.developer_id.clone());
            s.core.authorize_device_for(&caller, did, act).await?;
            Ok(d.actor())
        }
        Principal::User(u) => match s.core.authorize_device(&u.user_id, did, need).await {
            Ok(_) => Ok(u.actor()),
            Err(e) => {
                let mut ev = rampart_core::audit::AuditEvent::new(
                    &u.actor(),
                    action::DEVICE_ACCESS,
                    &format!("denied: {e}"),
                )
                .target(format!("device:{did}"))
                .detail(format!("{need:?}"));
                if let Some(ip) = client_ip(addr) {
                    ev = ev.source_ip(ip);
                }
                s.core.audit(ev).await;
                Err(e.into())
            }
        },
        Principal::OAuth(o) => crate::oauth::authorize_device(s, o, did, need, addr).await,
    }
}

/// A page of a list answer, its keys sorted as every list answer always had them.
pub(crate) fn page_of<T: serde::Serialize>(
    data: Vec<T>,
    page: i64,
    limit: i64,
    total: i64,
) -> schemas::Sorted<schemas::Page<T>> {
    schemas::Sorted(schemas::Page::of(data, page, limit, total))
}

pub(crate) fn parse_pk(pk: &str) -> Result<ProductKey, Error> {
    ProductKey::parse(pk).map_err(|_| Error::not_found("product"))
}

pub(crate) fn parse_did(did: &str) -> Result<Did, Error> {
    Did::parse(did).map_err(|_| Error::not_found("device"))
}
