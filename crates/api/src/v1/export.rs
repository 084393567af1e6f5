//! The shape of a user's data export (`GET /v1/users/me/export`): what the core read, as the JSON
//! the user downloads. Field names are the API's own (a login session is a `session_id`, never
//! the store's token family).

use super::schemas::Millis;
use rampart_core::device::runtime::HistoryPoint;
use rampart_core::erasure::user::UserExport as Read;
use serde::Serialize;
use utoipa::ToSchema;

/// Everything held about the signed-in user.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"exported_at": 1765000000000i64,
    "user": {"user_id": "u_5f2a", "email": "ada@example.com", "phone": null, "active": true,
        "app_id": "app_7k2m", "created_at": 1764000000000i64},
    "bindings": [{"did": "d_0001", "product_key": "pk_1a2b3c", "role": "owner", "bound_at": 1764000100000i64}],
    "shares": [], "grants": [], "sessions": [{"session_id": "f_9x", "app_id": "app_7k2m",
        "revoked": false, "created_at": 1765000000000i64}],
    "identity_links": [],
    "history": [{"did": "d_0001", "entries": [{"ts": 1764999000000i64, "point": "power", "value": true}]}]}))]
pub(crate) struct UserExport {
    #[schema(value_type = Millis)]
    exported_at: i64,
    user: ExportedUser,
    bindings: Vec<ExportedBinding>,
    /// shares the user gave or received
    shares: Vec<ExportedShare>,
    /// third parties the user let act for them (OAuth)
    grants: Vec<ExportedGrant>,
    /// logins, ended ones included until they are purged
    sessions: Vec<ExportedSession>,
    /// OpenID Connect providers the user signs in with
    identity_links: Vec<ExportedLink>,
    /// the latest history of every device the user is bound to
    history: Vec<ExportedHistory>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedUser {
    user_id: String,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    phone: Option<String>,
    active: bool,
    app_id: String,
    #[schema(value_type = Millis)]
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedBinding {
    did: String,
    product_key: String,
    /// `owner`, `member` or `guest`
    role: String,
    #[schema(value_type = Millis)]
    bound_at: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedShare {
    share_id: String,
    did: String,
    owner_id: String,
    invitee_id: String,
    role: String,
    /// `pending` or `accepted`
    status: String,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(value_type = Option<Millis>, required = true)]
    accepted_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedGrant {
    grant_id: String,
    client_id: String,
    scope: String,
    active: bool,
    revoked: bool,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(value_type = Millis)]
    expires_at: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedSession {
    session_id: String,
    app_id: String,
    revoked: bool,
    #[schema(value_type = Millis)]
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedLink {
    provider: String,
    subject: String,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(value_type = Millis)]
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedHistory {
    did: String,
    /// newest first
    #[schema(value_type = Vec<super::schemas::HistoryPoint>)]
    entries: Vec<HistoryPoint>,
}

impl From<Read> for UserExport {
    fn from(e: Read) -> UserExport {
        let r = e.records;
        UserExport {
            exported_at: e.exported_at,
            user: ExportedUser {
                user_id: r.user.user_id,
                email: r.user.email,
                phone: r.user.phone,
                active: r.user.active,
                app_id: r.user.app_id,
                created_at: r.user.created_at,
            },
            bindings: r
                .bindings
                .into_iter()
                .map(|b| ExportedBinding {
                    did: b.did,
                    product_key: b.product_key,
                    role: b.role,
                    bound_at: b.created_at,
                })
                .collect(),
            shares: r
                .shares
                .into_iter()
                .map(|x| ExportedShare {
                    share_id: x.share_id,
                    did: x.did,
                    owner_id: x.owner_id,
                    invitee_id: x.invitee_id,
                    role: x.role,
                    status: x.status,
                    created_at: x.created_at,
                    accepted_at: x.accepted_at,
                })
                .collect(),
            grants: r
                .grants
                .into_iter()
                .map(|g| ExportedGrant {
                    grant_id: g.grant_id,
                    client_id: g.client_id,
                    scope: g.scope,
                    active: g.active,
                    revoked: g.revoked,
                    created_at: g.created_at,
                    expires_at: g.expires_at,
                })
                .collect(),
            sessions: r
                .sessions
                .into_iter()
                .map(|f| ExportedSession {
                    session_id: f.family_id,
                    app_id: f.app_id,
                    revoked: f.revoked,
                    created_at: f.created_at,
                })
                .collect(),
            identity_links: r
                .identity_links
                .into_iter()
                .map(|l| ExportedLink {
                    provider: l.provider,
                    subject: l.subject,
                    email: l.email,
                    created_at: l.created_at,
                })
                .collect(),
            history: e
                .history
                .into_iter()
                .map(|(did, entries)| ExportedHistory { did, entries })
                .collect(),
        }
    }
}
