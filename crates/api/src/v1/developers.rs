//! Developer accounts: sign-up, activation, password reset, login, tokens, the developer's own
//! account, password change and TOTP. Each handler's `#[utoipa::path]` and answer types make its
//! part of the OpenAPI document.
//!
//! Credentials and second factors are checked by `rampart_core::identity::developers`; this module must
//! never check one itself.

use super::schemas::{
    Accepted, ActivationPending, Active, DeveloperView, EnterpriseView, Millis, PasswordChanged,
    SessionsEnded, Sorted,
};
use crate::extract::{client_ip, Body, Developer, OptionalBody};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::identity::developers::SecondFactor;
use rampart_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(activate))
        .routes(routes!(resend))
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(totp_enrol))
        .routes(routes!(totp_confirm))
        .routes(routes!(totp_disable))
}

crate::errors!(SignUpErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, InvalidRequest,
    WeakPassword, Busy, Internal);
crate::errors!(ActivateErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidCode, Internal);
crate::errors!(CodeRequestErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, RateLimited, Internal);
crate::errors!(ResetConfirmErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidCode, WeakPassword, Busy, Internal);
crate::errors!(LoginErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, Unauthorized,
    TotpRequired, AccountNotActive, AccountSuspended, Busy, Internal);
crate::errors!(RefreshErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, Unauthorized,
    Internal);
crate::errors!(SignedInErrors: Unauthorized, Internal);
crate::errors!(MeErrors: Unauthorized, NotFound, Internal);
crate::errors!(DeleteMeErrors: Unauthorized, InvalidJson, PayloadTooLarge, Forbidden, Conflict,
    Busy, Internal);
crate::errors!(ChangePasswordErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, WeakPassword, Forbidden, Busy, Internal);
crate::errors!(TotpEnrolErrors: Unauthorized, Conflict, Internal);
crate::errors!(TotpConfirmErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, InvalidCode, Conflict, Internal);
crate::errors!(TotpDisableErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, Forbidden, Conflict, Busy, Internal);

// ---- the answers ----

/// A developer's token pair, shown once.
#[derive(Serialize, ToSchema)]
#[schema(as = DeveloperTokenPair, example = json!({"access_token": "rdt_5c1f...",
    "refresh_token": "rdr_9a0e...", "expires_in": 3600}))]
pub(crate) struct TokenPair {
    access_token: String,
    refresh_token: String,
    /// seconds
    expires_in: i64,
}

impl From<rampart_core::identity::accounts::TokenPair> for TokenPair {
    fn from(p: rampart_core::identity::accounts::TokenPair) -> TokenPair {
        TokenPair {
            access_token: p.access_token.expose().to_owned(),
            refresh_token: p.refresh_token.expose().to_owned(),
            expires_in: p.expires_in,
        }
    }
}

/// The signed-in developer and the enterprises they belong to.
// Sent through `Sorted`, as it always was (keys sorted).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"developer_id": "dev_8f3k2q", "email": "dev@maker.example",
    "active": true, "suspended": false, "totp_enabled": false, "created_at": 1765000000000_i64,
    "enterprises": [{"enterprise_id": "ent_4k2m9x", "name": "Maker Ltd", "suspended": false,
        "role": "owner", "created_at": 1765000000000_i64}]}))]
pub(crate) struct DeveloperMe {
    developer_id: String,
    email: String,
    active: bool,
    suspended: bool,
    totp_enabled: bool,
    #[schema(value_type = Millis)]
    created_at: i64,
    enterprises: Vec<EnterpriseView>,
}

impl DeveloperMe {
    fn of(d: DeveloperView, enterprises: Vec<EnterpriseView>) -> DeveloperMe {
        DeveloperMe {
            developer_id: d.developer_id,
            email: d.email,
            active: d.active,
            suspended: d.suspended,
            totp_enabled: d.totp_enabled,
            created_at: d.created_at,
            enterprises,
        }
    }
}

/// A TOTP secret being enrolled, shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"secret": "JBSWY3DPEHPK3PXP",
    "otpauth_uri": "otpauth://totp/Rampart:dev@maker.example?secret=JBSWY3DPEHPK3PXP&issuer=Rampart"}))]
pub(crate) struct TotpEnrolment {
    secret: String,
    otpauth_uri: String,
}

impl From<rampart_core::identity::developers::TotpEnrolment> for TotpEnrolment {
    fn from(e: rampart_core::identity::developers::TotpEnrolment) -> TotpEnrolment {
        TotpEnrolment {
            secret: e.secret.expose().to_owned(),
            otpauth_uri: e.otpauth_uri.expose().to_owned(),
        }
    }
}

/// The recovery codes, shown once when TOTP is turned on.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"recovery_codes": ["4f2k-9x1m", "q8d3-7z0p"]}))]
pub(crate) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

impl From<rampart_core::identity::developers::RecoveryCodes> for RecoveryCodes {
    fn from(c: rampart_core::identity::developers::RecoveryCodes) -> RecoveryCodes {
        RecoveryCodes {
            recovery_codes: c
                .recovery_codes
                .iter()
                .map(|c| c.expose().to_owned())
                .collect(),
        }
    }
}

/// `{"totp_enabled": false}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"totp_enabled": false}))]
pub(crate) struct TotpOff {
    #[schema(schema_with = only_false)]
    totp_enabled: bool,
}

/// A boolean that is always `false`.
fn only_false() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

// ---- accounts ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperSignUp, example = json!({"email": "dev@maker.example",
    "password": "velvet tundra oxide lantern"}))]
pub(crate) struct SignUp {
    pub(super) email: String,
    #[schema(value_type = String)]
    pub(super) password: Secret,
}

#[utoipa::path(post, path = "/v1/developers", tag = "developers", summary = "Sign up a developer",
    request_body = SignUp,
    responses((status = 201, description = "activation pending", body = ActivationPending),
        SignUpErrors))]
async fn sign_up(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    s.core
        .register_developer(&b.email, b.password, client_ip(&addr))
        .await?;
    let pending = ActivationPending;
    Ok((StatusCode::CREATED, Json(pending)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperActivation, example = json!({"email": "dev@maker.example", "code": "483920"}))]
pub(crate) struct Activate {
    email: String,
    #[schema(value_type = String)]
    code: Secret,
}

#[utoipa::path(post, path = "/v1/developers/activate", tag = "developers",
    summary = "Activate a developer account", request_body = Activate,
    responses((status = 200, description = "active", body = Active), ActivateErrors))]
async fn activate(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Activate>,
) -> Result<Json<Active>, Error> {
    s.core
        .activate_developer(&b.email, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(Active))
}

/// An e-mail address alone: where to send a new code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperEmail, example = json!({"email": "dev@maker.example"}))]
pub(crate) struct Resend {
    email: String,
}

fn accepted() -> Response {
    let accepted = Accepted;
    (StatusCode::ACCEPTED, Json(accepted)).into_response()
}

#[utoipa::path(post, path = "/v1/developers/activate/resend", tag = "developers",
    summary = "Send a new activation code", request_body = Resend,
    responses((status = 202, description = "accepted", body = Accepted), CodeRequestErrors))]
async fn resend(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(b): Body<Resend>,
) -> Result<Response, Error> {
    s.core
        .resend_developer_activation(&b.email, client_ip(&addr))
        .await?;
    Ok(accepted())
}

#[utoipa::path(post, path = "/v1/developers/password/reset", tag = "developers",
    summary = "Ask for a password reset code", request_body = Resend,
    responses((status = 202, description = "accepted, whether or not the account exists",
        body = Accepted), CodeRequestErrors))]
async fn reset_request(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Resend>,
) -> Result<Response, Error> {
    s.core
        .request_developer_password_reset(&b.email, client_ip(&addr))
        .await?;
    Ok(accepted())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperPasswordReset, example = json!({"email": "dev@maker.example",
    "code": "483920", "password": "amber quarry nectar violin"}))]
pub(crate) struct ResetConfirm {
    email: String,
    #[schema(value_type = String)]
    code: Secret,
    #[schema(value_type = String)]
    password: Secret,
}

fn changed() -> Json<PasswordChanged> {
    Json(PasswordChanged)
}

#[utoipa::path(post, path = "/v1/developers/password/reset/confirm", tag = "developers",
    summary = "Set a new password with the reset code", request_body = ResetConfirm,
    responses((status = 200, description = "changed; every session ends (TOTP stays on)",
        body = PasswordChanged), ResetConfirmErrors))]
async fn reset_confirm(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<ResetConfirm>,
) -> Result<Json<PasswordChanged>, Error> {
    s.core
        .confirm_developer_password_reset(&b.email, b.code.expose(), b.password, client_ip(&addr))
        .await?;
    Ok(changed())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperLogin, example = json!({"email": "dev@maker.example",
    "password": "velvet tundra oxide lantern", "totp": "492039"}))]
pub(crate) struct Login {
    email: String,
    #[schema(value_type = String)]
    password: Secret,
    /// the current TOTP code, when TOTP is on
    #[schema(value_type = String, required = false)]
    totp: Option<Secret>,
    /// a recovery code instead of the TOTP code
    #[schema(value_type = String, required = false)]
    recovery_code: Option<Secret>,
}

#[utoipa::path(post, path = "/v1/developers/login", tag = "developers",
    summary = "Log in (developer)", request_body = Login,
    responses((status = 200, description = "a token pair", body = TokenPair), LoginErrors))]
async fn login(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Login>,
) -> Result<Json<TokenPair>, Error> {
    let second = SecondFactor {
        totp: b.totp,
        recovery_code: b.recovery_code,
    };
    let pair = s
        .core
        .developer_login(&b.email, b.password, second, client_ip(&addr))
        .await?;
    Ok(Json(TokenPair::from(pair)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperRefresh, example = json!({"refresh_token": "rdr_9a0e..."}))]
pub(crate) struct Refresh {
    #[schema(value_type = String)]
    refresh_token: Secret,
}

#[utoipa::path(post, path = "/v1/developers/token/refresh", tag = "developers",
    summary = "Spend a refresh token for a new pair", request_body = Refresh,
    responses((status = 200, description = "a new token pair", body = TokenPair), RefreshErrors))]
async fn refresh(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Refresh>,
) -> Result<Json<TokenPair>, Error> {
    let pair = s
        .core
        .developer_refresh(b.refresh_token.expose(), client_ip(&addr))
        .await?;
    Ok(Json(TokenPair::from(pair)))
}

#[utoipa::path(post, path = "/v1/developers/logout", tag = "developers", summary = "End this login",
    responses((status = 200, description = "ended", body = SessionsEnded), SignedInErrors),
    security(("developer" = [])))]
async fn logout(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
) -> Result<Json<SessionsEnded>, Error> {
    s.core.developer_logout(&d, client_ip(&addr)).await?;
    Ok(Json(SessionsEnded { sessions_ended: 1 }))
}

/// Proof that the developer is deleting the account: the password, or nothing when the
/// session's login is fresh.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperDeletion, example = json!({"password": "correct horse battery"}))]
pub(crate) struct DeleteMe {
    #[schema(value_type = Option<String>)]
    password: Option<Secret>,
}

/// What deleting a developer account removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"developer_id": "dev_5f2a", "deleted": {"products": 1, "devices": 40,
    "sessions": 2, "recovery_codes": 10, "memberships": 1, "invites": 0, "oauth_clients": 0}}))]
pub(crate) struct DeveloperDeleted {
    developer_id: String,
    deleted: DeletedOfDeveloper,
}

/// Rows removed with a developer account, by kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedOfDeveloper {
    /// personal products, each with its devices and everything recorded about them
    products: u64,
    devices: u64,
    /// login sessions with their tokens
    sessions: u64,
    recovery_codes: u64,
    /// memberships of enterprises
    memberships: u64,
    /// invitations addressed to the developer
    invites: u64,
    /// OAuth clients the developer registered, with their grants and tokens
    oauth_clients: u64,
}

#[utoipa::path(delete, path = "/v1/developers/me", tag = "developers",
    summary = "Delete the signed-in developer's account and what it owns",
    description = "Audited (`developer.delete`, under the developer's id only). Needs `password`, \
        or a login in the last 5 minutes (a wrong password counts toward the login lockout). \
        Deletes every personal product as `DELETE /v1/products/{product_key}` does, then the \
        account (e-mail, password hash, TOTP seed), its sessions, recovery codes, memberships, \
        invitations and OAuth clients. 409 while the developer is the only owner of an \
        enterprise (delete it, or make another member owner, first). The body may be left out.",
    request_body(content = Option<DeleteMe>, description = "the password"),
    responses((status = 202, description = "deleted; what was removed", body = DeveloperDeleted),
        DeleteMeErrors),
    security(("developer" = [])))]
async fn delete_me(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    OptionalBody(b): OptionalBody<DeleteMe>,
) -> Result<Response, Error> {
    let e = s
        .core
        .erase_developer(&d, b.password, client_ip(&addr))
        .await?;
    let body = DeveloperDeleted {
        developer_id: d.developer_id.clone(),
        deleted: DeletedOfDeveloper {
            products: e.products,
            devices: e.devices,
            sessions: e.rows.sessions,
            recovery_codes: e.rows.recovery_codes,
            memberships: e.rows.memberships,
            invites: e.rows.invites,
            oauth_clients: e.rows.oauth_clients,
        },
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/developers/me", tag = "developers",
    summary = "The signed-in developer and their enterprises",
    responses((status = 200, description = "the developer", body = DeveloperMe), MeErrors),
    security(("developer" = [])))]
async fn me(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Sorted<DeveloperMe>, Error> {
    let v = s.core.developer_view(&d.developer_id).await?;
    let ents = s.core.my_enterprises(&d).await?;
    let ents = ents.into_iter().map(EnterpriseView::from).collect();
    Ok(Sorted(DeveloperMe::of(DeveloperView::from(v), ents)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeveloperPasswordChange, example = json!({"old_password": "velvet tundra oxide lantern",
    "new_password": "amber quarry nectar violin"}))]
pub(crate) struct ChangePassword {
    #[schema(value_type = String)]
    old_password: Secret,
    #[schema(value_type = String)]
    new_password: Secret,
}

#[utoipa::path(post, path = "/v1/developers/me/password", tag = "developers",
    summary = "Change the password", request_body = ChangePassword,
    responses((status = 200, description = "changed; the developer's other sessions end",
        body = PasswordChanged), ChangePasswordErrors),
    security(("developer" = [])))]
async fn change_password(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<ChangePassword>,
) -> Result<Json<PasswordChanged>, Error> {
    s.core
        .developer_change_password(&d, b.old_password, b.new_password, client_ip(&addr))
        .await?;
    Ok(changed())
}

// ---- TOTP ----

#[utoipa::path(post, path = "/v1/developers/me/totp", tag = "developers",
    summary = "Start TOTP enrolment",
    responses((status = 201, description = "the secret; TOTP stays off until confirmed",
        body = TotpEnrolment), TotpEnrolErrors),
    security(("developer" = [])))]
async fn totp_enrol(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
) -> Result<Response, Error> {
    let e = s.core.totp_enrol(&d, client_ip(&addr)).await?;
    Ok((StatusCode::CREATED, Json(TotpEnrolment::from(e))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "492039"}))]
pub(crate) struct TotpCode {
    #[schema(value_type = String)]
    code: Secret,
}

#[utoipa::path(post, path = "/v1/developers/me/totp/confirm", tag = "developers",
    summary = "Confirm TOTP with a first code", request_body = TotpCode,
    responses((status = 200, description = "recovery codes, shown once", body = RecoveryCodes),
        TotpConfirmErrors),
    security(("developer" = [])))]
async fn totp_confirm(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<TotpCode>,
) -> Result<Json<RecoveryCodes>, Error> {
    let codes = s
        .core
        .totp_confirm(&d, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(RecoveryCodes::from(codes)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "velvet tundra oxide lantern", "totp": "492039"}))]
pub(crate) struct TotpDisable {
    #[schema(value_type = String)]
    password: Secret,
    /// the current TOTP code
    #[schema(value_type = String, required = false)]
    totp: Option<Secret>,
    /// a recovery code instead of the TOTP code
    #[schema(value_type = String, required = false)]
    recovery_code: Option<Secret>,
}

#[utoipa::path(post, path = "/v1/developers/me/totp/disable", tag = "developers",
    summary = "Turn TOTP off", request_body = TotpDisable,
    responses((status = 200, description = "off", body = TotpOff), TotpDisableErrors),
    security(("developer" = [])))]
async fn totp_disable(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<TotpDisable>,
) -> Result<Json<TotpOff>, Error> {
    let second = SecondFactor {
        totp: b.totp,
        recovery_code: b.recovery_code,
    };
    s.core
        .totp_disable(&d, b.password, second, client_ip(&addr))
        .await?;
    Ok(Json(TotpOff {
        totp_enabled: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::schemas::assert_sent_as;
    use rampart_core::identity::developers as core;
    use serde_json::json;

    /// The typed answers are sent as the core's values and the JSON they replaced, byte for byte.
    #[test]
    fn the_answers_keep_their_bytes() {
        let secret = |s: &str| Secret::new(s.to_owned());
        let pair = || rampart_core::identity::accounts::TokenPair {
            access_token: secret("rdt_a"),
            refresh_token: secret("rdr_b"),
            expires_in: 3600,
        };
        assert_sent_as(&pair(), &TokenPair::from(pair()));
        let enrolment = || core::TotpEnrolment {
            secret: secret("JBSWY3DP"),
            otpauth_uri: secret("otpauth://totp/x"),
        };
        assert_sent_as(&enrolment(), &TotpEnrolment::from(enrolment()));
        let codes = || core::RecoveryCodes {
            recovery_codes: vec![secret("a-1"), secret("b-2")],
        };
        assert_sent_as(&codes(), &RecoveryCodes::from(codes()));
        let pending = ActivationPending;
        assert_sent_as(&json!({"status": "activation_pending"}), &pending);
        let off = TotpOff {
            totp_enabled: false,
        };
        assert_sent_as(&json!({"totp_enabled": false}), &off);
    }
}
