//! Bindings and shares: a user binds a device (by passcode or bind token), lists and drops
//! bindings, shares a device with another user, and accepts or declines shares; the device's
//! passcode for its manager.
//!
//! Who may bind, share or unbind is `rampart_core::access::bindings`'s decision; this module only
//! asks. Each handler's `#[utoipa::path]` and answer types make its part of the OpenAPI document.

use super::schemas::{Listed, Millis, Page, PageParams, Sorted};
use super::{page_of, parse_did, PageQuery};
use crate::extract::{client_ip, Body, Manager, User, Q};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::bindings::{BindProof, Role};
use rampart_core::audit::action;
use rampart_core::identity::accounts::Identity;
use rampart_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(passcode))
        .routes(routes!(bind_token))
        .routes(routes!(create_share, device_shares))
        .routes(routes!(revoke_share))
        .routes(routes!(bind, crate::oauth::list_bindings))
        .routes(routes!(unbind))
        .routes(routes!(list_shares))
        .routes(routes!(decline_share))
        .routes(routes!(accept_share))
}

// ---- the answers and bodies ----

/// A user's role on a device (`rampart_core::access::bindings::Role`).
#[derive(ToSchema)]
#[schema(as = BindingRole, rename_all = "lowercase")]
#[allow(dead_code)] // only described
pub(crate) enum RoleSchema {
    Owner,
    Member,
    Guest,
}

/// The role a share offers (an owner cannot be offered).
#[derive(ToSchema)]
#[schema(as = ShareRole, rename_all = "lowercase")]
#[allow(dead_code)] // only described
pub(crate) enum ShareRoleSchema {
    Member,
    Guest,
}

/// A device bound to the caller, and the caller's role on it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "role": "owner"}))]
pub(crate) struct BindResult {
    did: String,
    #[schema(value_type = RoleSchema)]
    role: Role,
}

/// `rampart_core::access::bindings::BindingView`: a device the user is bound to.
#[derive(ToSchema)]
#[schema(as = Binding, example = binding_view)]
#[allow(dead_code)] // only described: the handlers answer the core's view
pub(crate) struct BindingSchema {
    did: String,
    product_key: String,
    role: RoleSchema,
    #[schema(value_type = Millis)]
    bound_at: i64,
}

fn binding_view() -> rampart_core::access::bindings::BindingView {
    rampart_core::access::bindings::BindingView {
        did: "d_0001".into(),
        product_key: "pk_1a2b3c".into(),
        role: Role::Owner,
        bound_at: 1765000000000,
    }
}

/// `rampart_core::access::bindings::ShareView`: a share offered to the user.
#[derive(ToSchema)]
#[schema(as = Share, example = share_view)]
#[allow(dead_code)] // only described: the handlers answer the core's view
pub(crate) struct ShareSchema {
    share_id: String,
    did: String,
    role: RoleSchema,
    status: ShareStatus,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(required = true)]
    accepted_at: Option<i64>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only described
pub(crate) enum ShareStatus {
    Pending,
    Accepted,
}

fn share_view() -> rampart_core::access::bindings::ShareView {
    rampart_core::access::bindings::ShareView {
        share_id: "sh_3c9d".into(),
        did: "d_0001".into(),
        role: Role::Member,
        status: "accepted".into(),
        created_at: 1765000000000,
        accepted_at: Some(1765000600000),
    }
}

/// `rampart_core::access::bindings::DeviceShareView`: a share as the device's owner sees it.
#[derive(ToSchema)]
#[schema(as = DeviceShare, example = device_share_view)]
#[allow(dead_code)] // only described: the handler answers the core's view
pub(crate) struct DeviceShareSchema {
    share_id: String,
    did: String,
    role: RoleSchema,
    status: ShareStatus,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(required = true)]
    accepted_at: Option<i64>,
    /// the invitee's e-mail or phone
    user: String,
}

fn device_share_view() -> rampart_core::access::bindings::DeviceShareView {
    rampart_core::access::bindings::DeviceShareView {
        share: rampart_core::access::bindings::ShareView {
            accepted_at: None,
            status: "pending".into(),
            ..share_view()
        },
        user: "bob@example.com".into(),
    }
}

/// Every share of a device: `{"data": [...], "meta": {"total"}}`.
#[derive(ToSchema)]
#[allow(dead_code)] // only described: `device_shares` answers it
pub(crate) struct DeviceShares {
    data: Vec<DeviceShareSchema>,
    meta: Total,
}

#[derive(ToSchema)]
#[allow(dead_code)] // only described
pub(crate) struct Total {
    total: i64,
}

/// `rampart_core::access::bindings::BindToken`: a single-use bind token, shown once.
#[derive(ToSchema)]
#[schema(as = BindToken, example = json!({"token": "rbt_4e7f...", "expires_at": 1765000600000_i64}))]
#[allow(dead_code)] // only described: the handler answers the core's token
pub(crate) struct BindTokenSchema {
    token: String,
    #[schema(value_type = Millis)]
    expires_at: i64,
}

/// A device's passcode.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "passcode": "483920"}))]
pub(crate) struct Passcode {
    did: String,
    passcode: String,
}

/// A new share, pending until the invitee accepts it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"share_id": "sh_3c9d"}))]
pub(crate) struct ShareCreated {
    share_id: String,
}

/// The device is unbound.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"did": "d_0001", "status": "unbound"}))]
pub(crate) struct Unbound {
    did: String,
    status: UnboundStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UnboundStatus {
    Unbound,
}

/// The share is revoked by the device's owner.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"share_id": "sh_3c9d", "status": "revoked"}))]
pub(crate) struct ShareRevoked {
    share_id: String,
    status: RevokedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RevokedStatus {
    Revoked,
}

/// The share is declined (or given up) by the invitee.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"share_id": "sh_3c9d", "status": "declined"}))]
pub(crate) struct ShareDeclined {
    share_id: String,
    status: DeclinedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeclinedStatus {
    Declined,
}

crate::errors!(PasscodeErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(OwnerErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(CreateShareErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, Conflict, NotFound, Internal);
crate::errors!(BindErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Conflict, RateLimited, NotFound, Internal);
crate::errors!(UnbindErrors: Unauthorized, NotFound, Internal);
crate::errors!(ListSharesErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(AcceptErrors: Unauthorized, Conflict, NotFound, Internal);

/// A binding: the device and exactly one proof, its passcode or a bind token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"did": "d_0001", "passcode": "483920"}))]
pub(crate) struct BindBody {
    did: String,
    #[schema(value_type = String, required = false)]
    passcode: Option<Secret>,
    #[schema(value_type = String, required = false)]
    token: Option<Secret>,
}

#[utoipa::path(post, path = "/v1/bindings", tag = "bindings",
    summary = "Bind a device with its passcode or a bind token",
    description = "201 for a new binding, 200 when already bound. A wrong passcode or token \
        answers 404 like an unknown did.",
    request_body = BindBody,
    responses((status = 201, description = "bound", body = BindResult),
        (status = 200, description = "already bound", body = BindResult), BindErrors),
    security(("user" = [])))]
pub(crate) async fn bind(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Body(b): Body<BindBody>,
) -> Result<Response, Error> {
    let proof = match (b.passcode, b.token) {
        (Some(p), None) => BindProof::Passcode(p),
        (None, Some(t)) => BindProof::Token(t),
        _ => return Err(Error::invalid("give exactly one of `passcode` or `token`")),
    };
    let did = parse_did(&b.did)?;
    let (role, new) = s
        .core
        .bind(&u, did.as_str(), proof, client_ip(&addr))
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let bound = BindResult {
        did: did.as_str().to_owned(),
        role,
    };
    Ok((status, Json(bound)).into_response())
}

/// `GET /v1/bindings` for the user's own token (the route is `crate::oauth::list_bindings`,
/// which also serves third-party tokens).
pub(crate) async fn list_bindings(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Sorted<Page<rampart_core::access::bindings::BindingView>>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_bindings(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

#[utoipa::path(delete, path = "/v1/bindings/{did}", tag = "bindings", summary = "Unbind a device",
    description = "The owner's unbind removes every binding, share and bind token of the device.",
    responses((status = 200, description = "unbound", body = Unbound), UnbindErrors),
    security(("user" = [])))]
pub(crate) async fn unbind(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Unbound>, Error> {
    let did = parse_did(&did)?;
    s.core.unbind(&u, did.as_str(), client_ip(&addr)).await?;
    Ok(Json(Unbound {
        did: did.as_str().to_owned(),
        status: UnboundStatus::Unbound,
    }))
}

#[utoipa::path(post, path = "/v1/devices/{did}/bind-tokens", tag = "bindings",
    summary = "Mint a single-use bind token (owner)",
    responses((status = 201, description = "the token, valid 10 minutes", body = BindTokenSchema),
        OwnerErrors),
    security(("user" = [])))]
pub(crate) async fn bind_token(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let t = s
        .core
        .create_bind_token(&u, did.as_str(), client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(get, path = "/v1/devices/{did}/passcode", tag = "devices",
    summary = "Read a device's passcode",
    description = "Audited; no other read endpoint shows it.",
    responses((status = 200, description = "the passcode", body = Passcode), PasscodeErrors),
    security(("admin" = []), ("developer" = [])))]
pub(crate) async fn passcode(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Passcode>, Error> {
    let did = parse_did(&did)?;
    let caller = m.caller();
    s.core
        .authorize_device_for(
            &caller,
            did.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    let p = s.core.device_passcode(did.as_str()).await?;
    let mut ev =
        rampart_core::audit::AuditEvent::new(&caller.actor(), action::DEVICE_PASSCODE_READ, "ok")
            .target(format!("device:{}", did.as_str()));
    if let Some(ip) = client_ip(&addr) {
        ev = ev.source_ip(ip);
    }
    s.core.audit(ev).await;
    Ok(Json(Passcode {
        did: did.as_str().to_owned(),
        passcode: p.expose().to_owned(),
    }))
}

/// A device offered to another user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user": "bob@example.com", "role": "member"}))]
pub(crate) struct ShareBody {
    /// e-mail or phone
    user: String,
    #[schema(value_type = ShareRoleSchema)]
    role: Role,
}

#[utoipa::path(post, path = "/v1/devices/{did}/shares", tag = "bindings",
    summary = "Offer a device to another user (owner)", request_body = ShareBody,
    responses((status = 201, description = "the pending share", body = ShareCreated),
        CreateShareErrors),
    security(("user" = [])))]
pub(crate) async fn create_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
    Body(b): Body<ShareBody>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let who = Identity::parse_username(&b.user)?;
    let id = s
        .core
        .create_share(&u, did.as_str(), who, b.role, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(ShareCreated { share_id: id })).into_response())
}

#[utoipa::path(get, path = "/v1/devices/{did}/shares", tag = "bindings",
    summary = "Every share of a device (owner)",
    responses((status = 200, description = "the shares", body = DeviceShares), OwnerErrors),
    security(("user" = [])))]
pub(crate) async fn device_shares(
    State(s): State<AppState>,
    User(u): User,
    Path(did): Path<String>,
) -> Result<Sorted<Listed<impl serde::Serialize>>, Error> {
    let did = parse_did(&did)?;
    let rows = s.core.device_shares(&u, did.as_str()).await?;
    Ok(Sorted(Listed::of(rows)))
}

#[utoipa::path(delete, path = "/v1/devices/{did}/shares/{share_id}", tag = "bindings",
    summary = "Revoke a share (owner)",
    responses((status = 200, description = "revoked", body = ShareRevoked), OwnerErrors),
    security(("user" = [])))]
pub(crate) async fn revoke_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path((did, id)): Path<(String, String)>,
) -> Result<Json<ShareRevoked>, Error> {
    let did = parse_did(&did)?;
    s.core
        .revoke_share(&u, did.as_str(), &id, client_ip(&addr))
        .await?;
    Ok(Json(ShareRevoked {
        share_id: id,
        status: RevokedStatus::Revoked,
    }))
}

#[utoipa::path(get, path = "/v1/shares", tag = "bindings",
    summary = "The shares offered to the user", params(PageParams),
    responses((status = 200, description = "a page of shares", body = Page<ShareSchema>),
        ListSharesErrors),
    security(("user" = [])))]
pub(crate) async fn list_shares(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_shares(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

#[utoipa::path(post, path = "/v1/shares/{share_id}/accept", tag = "bindings",
    summary = "Accept a share",
    responses((status = 200, description = "the share, now accepted", body = ShareSchema),
        AcceptErrors),
    security(("user" = [])))]
pub(crate) async fn accept_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s.core.accept_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(v).into_response())
}

#[utoipa::path(delete, path = "/v1/shares/{share_id}", tag = "bindings",
    summary = "Decline or give up a share",
    responses((status = 200, description = "declined", body = ShareDeclined), UnbindErrors),
    security(("user" = [])))]
pub(crate) async fn decline_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<ShareDeclined>, Error> {
    s.core.decline_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(ShareDeclined {
        share_id: id,
        status: DeclinedStatus::Declined,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The typed answers write the bytes the `json!` answers they replace wrote.
    #[test]
    fn typed_answers_keep_their_bytes() {
        let same = |typed: String, old: Value| assert_eq!(typed, old.to_string());
        same(
            serde_json::to_string(&BindResult {
                did: "d".into(),
                role: Role::Member,
            })
            .unwrap(),
            json!({"did": "d", "role": Role::Member}),
        );
        same(
            serde_json::to_string(&Unbound {
                did: "d".into(),
                status: UnboundStatus::Unbound,
            })
            .unwrap(),
            json!({"did": "d", "status": "unbound"}),
        );
        same(
            serde_json::to_string(&Passcode {
                did: "d".into(),
                passcode: "1".into(),
            })
            .unwrap(),
            json!({"did": "d", "passcode": "1"}),
        );
        same(
            serde_json::to_string(&ShareCreated {
                share_id: "s".into(),
            })
            .unwrap(),
            json!({"share_id": "s"}),
        );
        same(
            serde_json::to_string(&ShareRevoked {
                share_id: "s".into(),
                status: RevokedStatus::Revoked,
            })
            .unwrap(),
            json!({"share_id": "s", "status": "revoked"}),
        );
        same(
            serde_json::to_string(&ShareDeclined {
                share_id: "s".into(),
                status: DeclinedStatus::Declined,
            })
            .unwrap(),
            json!({"share_id": "s", "status": "declined"}),
        );
    }
}
