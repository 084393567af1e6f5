//! Developer accounts: sign-up, activation, password reset, login, tokens, the developer's own
//! account, password change and TOTP.
//!
//! Credentials and second factors are checked by `rampart_core::identity::developers`; this module must
//! never check one itself.

use crate::extract::{client_ip, Body, Developer};
use crate::openapi::ApiRouter;
use crate::{AppState, ClientAddr, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use rampart_core::identity::developers::SecondFactor;
use rampart_core::secret::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/v1/developers", post(sign_up))
        .described("/v1/developers/activate", post(activate))
        .described("/v1/developers/activate/resend", post(resend))
        .described("/v1/developers/password/reset", post(reset_request))
        .described("/v1/developers/password/reset/confirm", post(reset_confirm))
        .described("/v1/developers/login", post(login))
        .described("/v1/developers/token/refresh", post(refresh))
        .described("/v1/developers/logout", post(logout))
        .described("/v1/developers/me", get(me))
        .described("/v1/developers/me/password", post(change_password))
        .described("/v1/developers/me/totp", post(totp_enrol))
        .described("/v1/developers/me/totp/confirm", post(totp_confirm))
        .described("/v1/developers/me/totp/disable", post(totp_disable))
}

// ---- accounts ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    pub(super) email: String,
    pub(super) password: Secret,
}

async fn sign_up(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    s.core
        .register_developer(&b.email, b.password, client_ip(&addr))
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
    email: String,
    code: Secret,
}

async fn activate(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Activate>,
) -> Result<Json<Value>, Error> {
    s.core
        .activate_developer(&b.email, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "active"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resend {
    email: String,
}

async fn resend(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(b): Body<Resend>,
) -> Result<Response, Error> {
    s.core
        .resend_developer_activation(&b.email, client_ip(&addr))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "accepted"}))).into_response())
}

async fn reset_request(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Resend>,
) -> Result<Response, Error> {
    s.core
        .request_developer_password_reset(&b.email, client_ip(&addr))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "accepted"}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetConfirm {
    email: String,
    code: Secret,
    password: Secret,
}

async fn reset_confirm(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<ResetConfirm>,
) -> Result<Json<Value>, Error> {
    s.core
        .confirm_developer_password_reset(&b.email, b.code.expose(), b.password, client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "changed"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    email: String,
    password: Secret,
    totp: Option<Secret>,
    recovery_code: Option<Secret>,
}

async fn login(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Login>,
) -> Result<Response, Error> {
    let second = SecondFactor {
        totp: b.totp,
        recovery_code: b.recovery_code,
    };
    let pair = s
        .core
        .developer_login(&b.email, b.password, second, client_ip(&addr))
        .await?;
    Ok(Json(pair).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refresh {
    refresh_token: Secret,
}

async fn refresh(
    State(s): State<AppState>,
    addr: Addr,
    Body(b): Body<Refresh>,
) -> Result<Response, Error> {
    let pair = s
        .core
        .developer_refresh(b.refresh_token.expose(), client_ip(&addr))
        .await?;
    Ok(Json(pair).into_response())
}

async fn logout(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
) -> Result<Json<Value>, Error> {
    s.core.developer_logout(&d, client_ip(&addr)).await?;
    Ok(Json(json!({"sessions_ended": 1})))
}

async fn me(State(s): State<AppState>, Developer(d): Developer) -> Result<Json<Value>, Error> {
    let v = s.core.developer_view(&d.developer_id).await?;
    let ents = s.core.my_enterprises(&d).await?;
    let mut body = json!(v);
    body["enterprises"] = json!(ents);
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    old_password: Secret,
    new_password: Secret,
}

async fn change_password(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<ChangePassword>,
) -> Result<Json<Value>, Error> {
    s.core
        .developer_change_password(&d, b.old_password, b.new_password, client_ip(&addr))
        .await?;
    Ok(Json(json!({"status": "changed"})))
}

// ---- TOTP ----

async fn totp_enrol(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
) -> Result<Response, Error> {
    let e = s.core.totp_enrol(&d, client_ip(&addr)).await?;
    Ok((StatusCode::CREATED, Json(e)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotpCode {
    code: Secret,
}

async fn totp_confirm(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<TotpCode>,
) -> Result<Response, Error> {
    let codes = s
        .core
        .totp_confirm(&d, b.code.expose(), client_ip(&addr))
        .await?;
    Ok(Json(codes).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotpDisable {
    password: Secret,
    totp: Option<Secret>,
    recovery_code: Option<Secret>,
}

async fn totp_disable(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Body(b): Body<TotpDisable>,
) -> Result<Json<Value>, Error> {
    let second = SecondFactor {
        totp: b.totp,
        recovery_code: b.recovery_code,
    };
    s.core
        .totp_disable(&d, b.password, second, client_ip(&addr))
        .await?;
    Ok(Json(json!({"totp_enabled": false})))
}
