//! End-user accounts: client apps, sign-up, activation, login, tokens, logout and passwords.
//! Request bodies are strict; secrets in them become `Secret` at once. Each handler's
//! `#[utoipa::path]` and answer types make its part of the OpenAPI document.
//!
//! Password rules, token lifetimes and lockouts are `rampart_core::identity::accounts`'s; this module
//! must never check a credential itself.

use super::schemas::{
    Accepted, ActivationPending, Active, Millis, PasswordChanged, SessionsEnded, TokenPairSchema,
};
use crate::extract::{client_ip, Admin, AppId, Body, OptionalBody, User};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::identity::accounts::{Identity, NewApp};
use rampart_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(create_app))
        .routes(routes!(sign_up))
        .routes(routes!(activate))
        .routes(routes!(resend))
        .routes(routes!(me, delete_me))
        .routes(routes!(export_me))
        .routes(routes!(change_password))
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

// ---- the answers and bodies ----

/// `rampart_core::identity::accounts::NewApp`: a client app and the products it serves.
// Deserialize only for the test that holds it to the core's `NewApp`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApp, example = json!({"name": "Lamp app", "product_keys": ["pk_1a2b3c"]}))]
#[allow(dead_code)] // only described: the handler reads the core's `NewApp`
pub(crate) struct NewAppSchema {
    name: String,
    #[schema(min_items = 1, max_items = 100)]
    product_keys: Vec<String>,
}

/// `rampart_core::identity::accounts::CreatedApp`: the app; its secret is shown once.
#[derive(ToSchema)]
#[schema(as = CreatedApp, example = created_app)]
#[allow(dead_code)] // only described: the handler answers the core's `CreatedApp`
pub(crate) struct CreatedAppSchema {
    app_id: String,
    app_secret: String,
}

fn created_app() -> rampart_core::identity::accounts::CreatedApp {
    rampart_core::identity::accounts::CreatedApp {
        app_id: "app_7k2m".into(),
        app_secret: "5be0...".into(),
    }
}

/// `rampart_core::identity::accounts::UserView`: an end user.
#[derive(ToSchema)]
#[schema(as = User, example = user_view)]
#[allow(dead_code)] // only described: the handler answers the core's `UserView`
pub(crate) struct UserSchema {
    user_id: String,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    phone: Option<String>,
    active: bool,
    #[schema(value_type = Millis)]
    created_at: i64,
}

fn user_view() -> rampart_core::identity::accounts::UserView {
    rampart_core::identity::accounts::UserView {
        user_id: "u_5f2a".into(),
        email: Some("ada@example.com".into()),
        phone: None,
        active: true,
        created_at: 1765000000000,
    }
}

crate::errors!(CreateAppErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, Conflict, NotFound, Internal);
crate::errors!(SignUpErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, InvalidRequest,
    WeakPassword, Busy, Internal);
crate::errors!(ActivateErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, InvalidRequest,
    InvalidCode, Internal);
crate::errors!(CodeRequestErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, RateLimited, Internal);
crate::errors!(LoginErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, Unauthorized,
    AccountNotActive, Busy, Internal);
crate::errors!(RefreshErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType, Unauthorized,
    Internal);
crate::errors!(LogoutErrors: Unauthorized, Internal);
crate::errors!(MeErrors: Unauthorized, NotFound, Internal);
crate::errors!(DeleteMeErrors: Unauthorized, InvalidJson, PayloadTooLarge, Forbidden, Busy,
    Internal);
crate::errors!(ChangePasswordErrors: Unauthorized, InvalidJson, PayloadTooLarge,
    UnsupportedMediaType, WeakPassword, Forbidden, Busy, Internal);
crate::errors!(ResetConfirmErrors: InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidCode, WeakPassword, Unauthorized, Forbidden, Busy, Internal);

#[utoipa::path(post, path = "/v1/apps", tag = "accounts",
    summary = "Create a client app for some products", request_body = NewAppSchema,
    responses((status = 201, description = "the app; the secret is shown once",
        body = CreatedAppSchema), CreateAppErrors),
    security(("admin" = [])))]
pub(crate) async fn create_app(
    State(s): State<AppState>,
    Admin(actor): Admin,
    addr: Addr,
    Body(b): Body<NewApp>,
) -> Result<Response, Error> {
    let created = s.core.create_app(b, &actor, client_ip(&addr)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A new end user: exactly one of `email` or `phone`, and a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserSignUp, example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub(crate) struct SignUp {
    #[schema(value_type = String, required = false)]
    email: Option<String>,
    /// international form, e.g. +4915123456789
    #[schema(value_type = String, required = false)]
    phone: Option<String>,
    #[schema(value_type = String)]
    password: Secret,
}

/// The app header of sign-up and login.
const APP_HEADER: &str = "the client app the user signs up or logs in through";

#[utoipa::path(post, path = "/v1/users", tag = "accounts", summary = "Sign up an end user",
    description = "A code goes to the address; an address with an account gets the same answer.",
    params(("X-Rampart-App-Id" = String, Header, description = APP_HEADER)),
    request_body = SignUp,
    responses((status = 201, description = "activation pending", body = ActivationPending),
        SignUpErrors))]
pub(crate) async fn sign_up(
    State(s): State<AppState>,
    AppId(app): AppId,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core
        .register_user(&app, who, b.password, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(ActivationPending)).into_response())
}

/// An activation: exactly one of `email` or `phone`, and the code sent there.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserActivation, example = json!({"email": "ada@example.com", "code": "482913"}))]
pub(crate) struct Activate {
    #[schema(value_type = String, required = false)]
    email: Option<String>,
    /// international form, e.g. +4915123456789
    #[schema(value_type = String, required = false)]
    phone: Option<String>,
    #[schema(value_type = String)]
    code: Secret,
}

#[utoipa::path(post, path = "/v1/users/activate", tag = "accounts",
    summary = "Activate an account with its code", request_body = Activate,
    responses((status = 200, description = "active", body = Active), ActivateErrors))]
pub(crate) async fn activate(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Activate>,
) -> Result<Json<Active>, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core
        .activate_user(who, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(Active))
}

/// Where a code goes: exactly one of `email` or `phone`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserAddress, example = json!({"phone": "+4915123456789"}))]
pub(crate) struct Recipient {
    #[schema(value_type = String, required = false)]
    email: Option<String>,
    /// international form, e.g. +4915123456789
    #[schema(value_type = String, required = false)]
    phone: Option<String>,
}

#[utoipa::path(post, path = "/v1/users/activate/resend", tag = "accounts",
    summary = "Send a new activation code", request_body = Recipient,
    responses((status = 202, description = "accepted, whether or not an inactive account exists",
        body = Accepted), CodeRequestErrors))]
pub(crate) async fn resend(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(b): Body<Recipient>,
) -> Result<Response, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core.resend_activation(who, client_ip(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted)).into_response())
}

/// An end user's login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserLogin, example = json!({"username": "ada@example.com", "password": "correct horse battery"}))]
pub(crate) struct Login {
    /// e-mail or phone
    username: String,
    #[schema(value_type = String)]
    password: Secret,
}

#[utoipa::path(post, path = "/v1/login", tag = "accounts", summary = "Log in (end user)",
    params(("X-Rampart-App-Id" = String, Header, description = APP_HEADER)),
    request_body = Login,
    responses((status = 200, description = "a token pair", body = TokenPairSchema), LoginErrors))]
pub(crate) async fn login(
    State(s): State<AppState>,
    AppId(app): AppId,
    addr: Addr,
    Body(b): Body<Login>,
) -> Result<Response, Error> {
    let pair = s
        .core
        .login(&app, &b.username, b.password, client_ip(&addr))
        .await?;
    Ok(Json(pair).into_response())
}

/// A refresh token to spend.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserRefresh, example = json!({"refresh_token": "rrt_81c2..."}))]
pub(crate) struct Refresh {
    #[schema(value_type = String)]
    refresh_token: Secret,
}

#[utoipa::path(post, path = "/v1/token/refresh", tag = "accounts",
    summary = "Spend a refresh token for a new pair", request_body = Refresh,
    responses((status = 200, description = "a new token pair", body = TokenPairSchema),
        RefreshErrors))]
pub(crate) async fn refresh(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Refresh>,
) -> Result<Response, Error> {
    let pair = s
        .core
        .refresh_tokens(b.refresh_token.expose(), client_ip(&addr))
        .await?;
    Ok(Json(pair).into_response())
}

#[utoipa::path(post, path = "/v1/logout", tag = "accounts", summary = "End this login",
    responses((status = 200, description = "ended", body = SessionsEnded), LogoutErrors),
    security(("user" = [])))]
pub(crate) async fn logout(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
) -> Result<Json<SessionsEnded>, Error> {
    s.core.logout(&u, client_ip(&addr)).await?;
    Ok(Json(SessionsEnded { sessions_ended: 1 }))
}

#[utoipa::path(post, path = "/v1/logout/all", tag = "accounts",
    summary = "End every login of the user",
    responses((status = 200, description = "ended", body = SessionsEnded), LogoutErrors),
    security(("user" = [])))]
pub(crate) async fn logout_all(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
) -> Result<Json<SessionsEnded>, Error> {
    let n = s.core.logout_all(&u, client_ip(&addr)).await?;
    Ok(Json(SessionsEnded { sessions_ended: n }))
}

#[utoipa::path(get, path = "/v1/users/me", tag = "accounts", summary = "The signed-in user",
    responses((status = 200, description = "the user", body = UserSchema), MeErrors),
    security(("user" = [])))]
pub(crate) async fn me(State(s): State<AppState>, User(u): User) -> Result<Response, Error> {
    Ok(Json(s.core.user_view(&u.user_id).await?).into_response())
}

/// Proof that the account holder is deleting the account: the password, or nothing when the
/// session's login is fresh.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserDeletion, example = json!({"password": "correct horse battery"}))]
pub(crate) struct DeleteMe {
    #[schema(value_type = Option<String>)]
    password: Option<Secret>,
}

/// What deleting the account removed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"user_id": "u_5f2a", "deleted": {"bindings": 2, "shares": 1,
    "grants": 1, "sessions": 3, "identity_links": 0, "codes": 0}}))]
pub(crate) struct UserDeleted {
    user_id: String,
    deleted: DeletedOfUser,
}

/// Rows removed with an account, by kind.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedOfUser {
    /// the user's device bindings, and those others held through the user's shares
    bindings: u64,
    /// shares given or received, invitations sent or addressed to the user
    shares: u64,
    /// third-party (OAuth) grants with their tokens
    grants: u64,
    /// login sessions with their tokens
    sessions: u64,
    /// links to OpenID Connect providers
    identity_links: u64,
    /// one-time codes sent to the user's e-mail or phone
    codes: u64,
}

#[utoipa::path(delete, path = "/v1/users/me", tag = "accounts",
    summary = "Delete the signed-in user's account (GDPR erasure)",
    description = "Audited (`user.delete`, under the user's id only). Needs `password`, or a login \
        in the last 5 minutes (a wrong password counts toward the login lockout). Removes the \
        account, its personal data (e-mail, phone), bindings, shares and invitations, third-party \
        grants, login sessions with their tokens and provider links, in one transaction; devices \
        the user owned become unowned. Afterwards the tokens and the login fail as for an unknown \
        user. The body may be left out.",
    request_body(content = Option<DeleteMe>, description = "the password"),
    responses((status = 202, description = "deleted; what was removed", body = UserDeleted),
        DeleteMeErrors),
    security(("user" = [])))]
pub(crate) async fn delete_me(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    OptionalBody(b): OptionalBody<DeleteMe>,
) -> Result<Response, Error> {
    let e = s.core.erase_user(&u, b.password, client_ip(&addr)).await?;
    let body = UserDeleted {
        user_id: u.user_id.clone(),
        deleted: DeletedOfUser {
            bindings: e.bindings,
            shares: e.shares,
            grants: e.grants,
            sessions: e.sessions,
            identity_links: e.identity_links,
            codes: e.codes,
        },
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/users/me/export", tag = "accounts",
    summary = "Everything held about the signed-in user (GDPR access)",
    description = "Audited (`user.export`). The account, bindings, shares given and received, \
        third-party grants, login sessions, provider links, and the latest history (up to 1,000 \
        entries each, newest first) of every device the user is bound to.",
    responses((status = 200, description = "the export", body = super::export::UserExport),
        MeErrors),
    security(("user" = [])))]
pub(crate) async fn export_me(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
) -> Result<Response, Error> {
    let e = s.core.export_user(&u, client_ip(&addr)).await?;
    Ok(Json(super::export::UserExport::from(e)).into_response())
}

/// The old password and the new one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserPasswordChange, example = json!({"old_password": "correct horse battery", "new_password": "staple lamp orbit"}))]
pub(crate) struct ChangePassword {
    #[schema(value_type = String)]
    old_password: Secret,
    #[schema(value_type = String)]
    new_password: Secret,
}

#[utoipa::path(post, path = "/v1/users/me/password", tag = "accounts",
    summary = "Change the password", request_body = ChangePassword,
    responses((status = 200, description = "changed; the user's other sessions end",
        body = PasswordChanged), ChangePasswordErrors),
    security(("user" = [])))]
pub(crate) async fn change_password(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Body(b): Body<ChangePassword>,
) -> Result<Json<PasswordChanged>, Error> {
    s.core
        .change_password(&u, b.old_password, b.new_password, client_ip(&addr))
        .await?;
    Ok(Json(PasswordChanged))
}

#[utoipa::path(post, path = "/v1/users/password/reset", tag = "accounts",
    summary = "Ask for a password reset code", request_body = Recipient,
    responses((status = 202, description = "accepted, whether or not the account exists",
        body = Accepted), CodeRequestErrors))]
pub(crate) async fn reset_request(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Recipient>,
) -> Result<Response, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core.request_password_reset(who, client_ip(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted)).into_response())
}

/// A password reset: exactly one of `email` or `phone`, the code sent there and the new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserPasswordReset, example = json!({"email": "ada@example.com", "code": "482913", "password": "staple lamp orbit"}))]
pub(crate) struct ResetConfirm {
    #[schema(value_type = String, required = false)]
    email: Option<String>,
    /// international form, e.g. +4915123456789
    #[schema(value_type = String, required = false)]
    phone: Option<String>,
    #[schema(value_type = String)]
    code: Secret,
    #[schema(value_type = String)]
    password: Secret,
}

#[utoipa::path(post, path = "/v1/users/password/reset/confirm", tag = "accounts",
    summary = "Set a new password with the reset code", request_body = ResetConfirm,
    responses((status = 200, description = "changed; every session and third-party grant ends",
        body = PasswordChanged), ResetConfirmErrors))]
pub(crate) async fn reset_confirm(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<ResetConfirm>,
) -> Result<Json<PasswordChanged>, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core
        .confirm_password_reset(who, b.code.expose(), b.password, client_ip(&addr))
        .await?;
    Ok(Json(PasswordChanged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::PartialSchema;

    fn text(v: &impl serde::Serialize) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// The typed answers write the bytes the `json!` answers they replace wrote.
    #[test]
    fn typed_answers_keep_their_bytes() {
        let pending = json!({"status": "activation_pending"});
        assert_eq!(text(&ActivationPending), pending.to_string());
        assert_eq!(text(&Active), json!({"status": "active"}).to_string());
        assert_eq!(text(&Accepted), json!({"status": "accepted"}).to_string());
        assert_eq!(
            text(&PasswordChanged),
            json!({"status": "changed"}).to_string()
        );
        assert_eq!(
            text(&SessionsEnded { sessions_ended: 3 }),
            json!({"sessions_ended": 3}).to_string()
        );
    }

    /// The documented body of `POST /v1/apps` is what the handler reads (the core's `NewApp`).
    #[test]
    fn the_documented_new_app_is_what_the_handler_reads() {
        let example = serde_json::to_value(NewAppSchema::schema()).unwrap()["example"].clone();
        serde_json::from_value::<NewAppSchema>(example.clone()).unwrap();
        serde_json::from_value::<NewApp>(example).unwrap();
    }
}
