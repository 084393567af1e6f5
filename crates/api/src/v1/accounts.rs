//! End-user accounts: client apps, sign-up, activation, login, tokens, logout and passwords.
//! Request bodies are strict; secrets in them become `Secret` at once.
//!
//! Password rules, token lifetimes and lockouts are `rampart_core::identity::accounts`'s; this module
//! must never check a credential itself.

use crate::extract::{client_ip, Admin, AppId, Body, User};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use rampart_core::audit::Actor;
use rampart_core::identity::accounts::{Identity, NewApp};
use rampart_core::secret::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/apps", post(create_app))
        .described("/v1/users", post(sign_up))
        .described("/v1/users/activate", post(activate))
        .described("/v1/users/activate/resend", post(resend))
        .described("/v1/users/me", get(me))
        .described("/v1/users/me/password", post(change_password))
        .described("/v1/users/password/reset", post(reset_request))
        .described("/v1/users/password/reset/confirm", post(reset_confirm))
        .described("/v1/login", post(login))
        .described("/v1/token/refresh", post(refresh))
        .described("/v1/logout", post(logout))
        .described("/v1/logout/all", post(logout_all))
}

pub(crate) async fn create_app(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Body(b): Body<NewApp>,
) -> Result<Response, Error> {
    let created = s
        .core
        .create_app(b, &Actor::admin(), client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    email: Option<String>,
    phone: Option<String>,
    password: Secret,
}

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
    Ok((
        StatusCode::CREATED,
        Json(json!({"status": "activation_pending"})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Activate {
    email: Option<String>,
    phone: Option<String>,
    code: Secret,
}

pub(crate) async fn activate(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Activate>,
) -> Result<Json<Value>, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core
        .activate_user(who, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "active"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Recipient {
    email: Option<String>,
    phone: Option<String>,
}

pub(crate) async fn resend(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(b): Body<Recipient>,
) -> Result<Response, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core.resend_activation(who, client_ip(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "accepted"}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: Secret,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refresh {
    refresh_token: Secret,
}

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

pub(crate) async fn logout(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
) -> Result<Json<Value>, Error> {
    s.core.logout(&u, client_ip(&addr)).await?;
    Ok(Json(json!({"sessions_ended": 1})))
}

pub(crate) async fn logout_all(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
) -> Result<Json<Value>, Error> {
    let n = s.core.logout_all(&u, client_ip(&addr)).await?;
    Ok(Json(json!({"sessions_ended": n})))
}

pub(crate) async fn me(State(s): State<AppState>, User(u): User) -> Result<Response, Error> {
    Ok(Json(s.core.user_view(&u.user_id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    old_password: Secret,
    new_password: Secret,
}

pub(crate) async fn change_password(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Body(b): Body<ChangePassword>,
) -> Result<Json<Value>, Error> {
    s.core
        .change_password(&u, b.old_password, b.new_password, client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "changed"})))
}

pub(crate) async fn reset_request(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Recipient>,
) -> Result<Response, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core.request_password_reset(who, client_ip(&addr)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "accepted"}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetConfirm {
    email: Option<String>,
    phone: Option<String>,
    code: Secret,
    password: Secret,
}

pub(crate) async fn reset_confirm(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<ResetConfirm>,
) -> Result<Json<Value>, Error> {
    let who = Identity::from_fields(b.email.as_deref(), b.phone.as_deref())?;
    s.core
        .confirm_password_reset(who, b.code.expose(), b.password, client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "changed"})))
}
