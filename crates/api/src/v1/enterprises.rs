//! Enterprises as their developers see them: create and list them, members and their roles,
//! invitations sent and received. Each handler's `#[utoipa::path]` and answer types make its part
//! of the OpenAPI document.
//!
//! Who may invite, change a role or remove a member is `rampart_core::access::tenancy`'s decision.

use super::schemas::{EnterpriseRole, EnterpriseView, Listed, Millis, Sorted};
use crate::extract::{client_ip, Body, Developer, Manager};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::tenancy::EntRole;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(my_invites))
        .routes(routes!(decline_invite))
        .routes(routes!(accept_invite))
        .routes(routes!(create_enterprise, my_enterprises))
        .routes(routes!(get_enterprise, delete_enterprise))
        .routes(routes!(members))
        .routes(routes!(set_role, remove_member))
        .routes(routes!(invite))
}

crate::errors!(CreateErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Conflict, Internal);
crate::errors!(MineErrors: Unauthorized, Internal);
crate::errors!(ReadErrors: Unauthorized, Forbidden, NotFound, Internal);
crate::errors!(DeleteErrors: Unauthorized, Forbidden, NotFound, Conflict, Internal);
crate::errors!(RoleErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    Forbidden, Conflict, NotFound, Internal);
crate::errors!(RemoveErrors: Unauthorized, Forbidden, Conflict, NotFound, Internal);
crate::errors!(InviteErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Forbidden, Conflict, NotFound, Internal);
crate::errors!(AcceptErrors: Unauthorized, Conflict, NotFound, Internal);
crate::errors!(DeclineErrors: Unauthorized, NotFound, Internal);

// ---- the answers ----

/// A member of an enterprise.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"developer_id": "dev_8f3k2q", "email": "dev@maker.example",
    "role": "owner", "created_at": 1765000000000_i64}))]
pub(crate) struct Member {
    developer_id: String,
    email: String,
    #[schema(value_type = EnterpriseRole)]
    role: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<rampart_core::access::enterprises::MemberView> for Member {
    fn from(m: rampart_core::access::enterprises::MemberView) -> Member {
        Member {
            developer_id: m.developer_id,
            email: m.email,
            role: m.role,
            created_at: m.created_at,
        }
    }
}

/// An invitation to join an enterprise.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"invite_id": "inv_2m7q0k", "enterprise_id": "ent_4k2m9x",
    "enterprise_name": "Maker Ltd", "email": "colleague@maker.example", "role": "admin",
    "invited_by": "dev_8f3k2q", "created_at": 1765000000000_i64}))]
pub(crate) struct Invite {
    invite_id: String,
    enterprise_id: String,
    enterprise_name: String,
    email: String,
    #[schema(value_type = EnterpriseRole)]
    role: String,
    invited_by: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

impl From<rampart_core::access::enterprises::InviteView> for Invite {
    fn from(i: rampart_core::access::enterprises::InviteView) -> Invite {
        Invite {
            invite_id: i.invite_id,
            enterprise_id: i.enterprise_id,
            enterprise_name: i.enterprise_name,
            email: i.email,
            role: i.role,
            invited_by: i.invited_by,
            created_at: i.created_at,
        }
    }
}

/// A new invitation's id.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"invite_id": "inv_2m7q0k"}))]
pub(crate) struct Invited {
    invite_id: String,
}

/// A member's new role.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"developer_id": "dev_8f3k2q", "role": "admin"}))]
pub(crate) struct RoleChanged {
    developer_id: String,
    #[schema(value_type = EnterpriseRole)]
    role: EntRole,
}

/// A member removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"developer_id": "dev_8f3k2q", "status": "removed"}))]
pub(crate) struct MemberRemoved {
    developer_id: String,
    status: RemovedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RemovedStatus {
    Removed,
}

/// An invitation declined.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"invite_id": "inv_2m7q0k", "status": "declined"}))]
pub(crate) struct InviteDeclined {
    invite_id: String,
    status: DeclinedStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeclinedStatus {
    Declined,
}

// ---- enterprises ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Maker Ltd"}))]
pub(crate) struct NewEnterprise {
    name: String,
}

/// A developer creates an enterprise and becomes its owner; the operator creates one with no
/// member yet (and invites its owners).
#[utoipa::path(post, path = "/v1/enterprises", tag = "enterprises",
    summary = "Create an enterprise",
    description = "A developer creates an enterprise and becomes its owner; the operator (admin \
        token) creates one with no member (`role` null) and invites its owners.",
    request_body = NewEnterprise,
    responses((status = 201, description = "the enterprise", body = EnterpriseView), CreateErrors),
    security(("admin" = []), ("developer" = [])))]
async fn create_enterprise(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Body(b): Body<NewEnterprise>,
) -> Result<Response, Error> {
    let e = match m {
        Manager::Developer(d) => {
            s.core
                .create_enterprise(&d, &b.name, client_ip(&addr))
                .await?
        }
        Manager::Operator(actor) => {
            s.core
                .operator_create_enterprise(&actor, &b.name, None, client_ip(&addr))
                .await?
        }
    };
    Ok((StatusCode::CREATED, Json(EnterpriseView::from(e))).into_response())
}

#[utoipa::path(get, path = "/v1/enterprises", tag = "enterprises",
    summary = "The caller's enterprises",
    responses((status = 200, description = "the enterprises with the caller's role",
        body = Listed<EnterpriseView>), MineErrors),
    security(("developer" = [])))]
async fn my_enterprises(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Sorted<Listed<EnterpriseView>>, Error> {
    let v = s.core.my_enterprises(&d).await?;
    let v = v.into_iter().map(EnterpriseView::from).collect();
    Ok(Sorted(Listed::of(v)))
}

#[utoipa::path(get, path = "/v1/enterprises/{id}", tag = "enterprises", summary = "An enterprise",
    responses((status = 200, description = "the enterprise and the caller's role",
        body = EnterpriseView), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn get_enterprise(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let e = s.core.enterprise_view(&m.caller(), &id).await?;
    Ok(Json(EnterpriseView::from(e)))
}

/// What deleting an enterprise removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"enterprise_id": "ent_7k2m", "deleted": {"products": 2, "devices": 300,
    "members": 4, "invites": 1, "access_keys": 2, "webhooks": 1}}))]
pub(crate) struct EnterpriseDeleted {
    enterprise_id: String,
    deleted: DeletedOfEnterprise,
}

/// Rows removed with an enterprise, by kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedOfEnterprise {
    /// products, each with its devices and everything recorded about them
    products: u64,
    devices: u64,
    members: u64,
    invites: u64,
    /// access keys of the enterprise API
    access_keys: u64,
    /// webhooks with their dead letters
    webhooks: u64,
}

#[utoipa::path(delete, path = "/v1/enterprises/{id}", tag = "enterprises",
    summary = "Delete an enterprise and everything it owns",
    description = "Audited (`enterprise.delete`, with the counts). The enterprise's owner, or an \
        operator. Deletes every product of the enterprise as `DELETE /v1/products/{product_key}` \
        does, then its access keys, webhooks with their dead letters, invitations, memberships and \
        the enterprise itself. There is no undo.",
    responses((status = 200, description = "deleted; what was removed", body = EnterpriseDeleted),
        DeleteErrors),
    security(("admin" = []), ("developer" = [])))]
async fn delete_enterprise(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseDeleted>, Error> {
    let e = s
        .core
        .erase_enterprise(&m.caller(), &id, client_ip(&addr))
        .await?;
    Ok(Json(EnterpriseDeleted {
        enterprise_id: id,
        deleted: DeletedOfEnterprise {
            products: e.products,
            devices: e.devices,
            members: e.rows.members,
            invites: e.rows.invites,
            access_keys: e.rows.access_keys,
            webhooks: e.rows.webhooks,
        },
    }))
}

#[utoipa::path(get, path = "/v1/enterprises/{id}/members", tag = "enterprises",
    summary = "An enterprise's members",
    responses((status = 200, description = "the members", body = Listed<Member>), ReadErrors),
    security(("admin" = []), ("developer" = [])))]
async fn members(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Sorted<Listed<Member>>, Error> {
    let v = s.core.enterprise_members(&m.caller(), &id).await?;
    let v = v.into_iter().map(Member::from).collect();
    Ok(Sorted(Listed::of(v)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "colleague@maker.example", "role": "admin"}))]
pub(crate) struct InviteBody {
    email: String,
    #[schema(value_type = EnterpriseRole)]
    role: EntRole,
}

#[utoipa::path(post, path = "/v1/enterprises/{id}/invites", tag = "enterprises",
    summary = "Invite a developer by e-mail", request_body = InviteBody,
    responses((status = 201, description = "the invitation", body = Invited), InviteErrors),
    security(("admin" = []), ("developer" = [])))]
async fn invite(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(id): Path<String>,
    Body(b): Body<InviteBody>,
) -> Result<Response, Error> {
    let invite_id = s
        .core
        .invite_member(&m.caller(), &id, &b.email, b.role, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(Invited { invite_id })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub(crate) struct RoleBody {
    #[schema(value_type = EnterpriseRole)]
    role: EntRole,
}

#[utoipa::path(put, path = "/v1/enterprises/{id}/members/{developer_id}", tag = "enterprises",
    summary = "Change a member's role", request_body = RoleBody,
    responses((status = 200, description = "changed", body = RoleChanged), RoleErrors),
    security(("admin" = []), ("developer" = [])))]
async fn set_role(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
    Body(b): Body<RoleBody>,
) -> Result<Json<RoleChanged>, Error> {
    s.core
        .set_member_role(&m.caller(), &id, &dev, b.role, client_ip(&addr))
        .await?;
    Ok(Json(RoleChanged {
        developer_id: dev,
        role: b.role,
    }))
}

#[utoipa::path(delete, path = "/v1/enterprises/{id}/members/{developer_id}", tag = "enterprises",
    summary = "Remove a member (or leave)",
    responses((status = 200, description = "removed", body = MemberRemoved), RemoveErrors),
    security(("admin" = []), ("developer" = [])))]
async fn remove_member(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
) -> Result<Json<MemberRemoved>, Error> {
    s.core
        .remove_member(&m.caller(), &id, &dev, client_ip(&addr))
        .await?;
    Ok(Json(MemberRemoved {
        developer_id: dev,
        status: RemovedStatus::Removed,
    }))
}

#[utoipa::path(get, path = "/v1/developers/me/invites", tag = "developers",
    summary = "Invitations addressed to the developer",
    responses((status = 200, description = "the invitations", body = Listed<Invite>), MineErrors),
    security(("developer" = [])))]
async fn my_invites(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Sorted<Listed<Invite>>, Error> {
    let v = s.core.my_invites(&d).await?;
    let v = v.into_iter().map(Invite::from).collect();
    Ok(Sorted(Listed::of(v)))
}

#[utoipa::path(post, path = "/v1/developers/me/invites/{invite_id}/accept", tag = "developers",
    summary = "Accept an invitation",
    responses((status = 200, description = "the enterprise joined", body = EnterpriseView),
        AcceptErrors),
    security(("developer" = [])))]
async fn accept_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<EnterpriseView>, Error> {
    let e = s.core.accept_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(EnterpriseView::from(e)))
}

#[utoipa::path(delete, path = "/v1/developers/me/invites/{invite_id}", tag = "developers",
    summary = "Decline an invitation",
    responses((status = 200, description = "declined", body = InviteDeclined), DeclineErrors),
    security(("developer" = [])))]
async fn decline_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<InviteDeclined>, Error> {
    s.core.decline_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(InviteDeclined {
        invite_id: id,
        status: DeclinedStatus::Declined,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::schemas::assert_sent_as;
    use rampart_core::access::enterprises as core;
    use serde_json::json;

    /// Members and invitations are sent as the core's values were.
    #[test]
    fn the_views_are_sent_as_the_core_s() {
        let member = || core::MemberView {
            developer_id: "dev_1".into(),
            email: "dev@maker.example".into(),
            role: "owner".into(),
            created_at: 1765000000000,
        };
        assert_sent_as(&member(), &Member::from(member()));
        let invite = || core::InviteView {
            invite_id: "inv_1".into(),
            enterprise_id: "ent_1".into(),
            enterprise_name: "Maker Ltd".into(),
            email: "colleague@maker.example".into(),
            role: "admin".into(),
            invited_by: "dev_1".into(),
            created_at: 1765000000000,
        };
        assert_sent_as(&invite(), &Invite::from(invite()));
    }

    /// The typed answers are sent as the JSON they replaced, byte for byte (keys sorted).
    #[test]
    fn the_answers_keep_their_bytes() {
        let dev = || "dev_1".to_owned();
        let pairs = [
            (
                serde_json::to_string(&RoleChanged {
                    developer_id: dev(),
                    role: EntRole::Admin,
                }),
                json!({"developer_id": dev(), "role": EntRole::Admin}),
            ),
            (
                serde_json::to_string(&MemberRemoved {
                    developer_id: dev(),
                    status: RemovedStatus::Removed,
                }),
                json!({"developer_id": dev(), "status": "removed"}),
            ),
            (
                serde_json::to_string(&InviteDeclined {
                    invite_id: "inv_1".into(),
                    status: DeclinedStatus::Declined,
                }),
                json!({"invite_id": "inv_1", "status": "declined"}),
            ),
        ];
        for (typed, was) in pairs {
            assert_eq!(typed.unwrap(), was.to_string());
        }
    }
}
