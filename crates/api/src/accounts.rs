//! Handlers of end-user accounts: apps, sign-up, activation, login, tokens, logout, passwords,
//! bindings and shares. Request bodies are strict; secrets in them become `Secret` at once.

use crate::auth::{Admin, AppId, User};
use crate::routes::{client_ip, page_of, Body, PageQuery, Q};
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_core::access::bindings::{BindProof, Role};
use rampart_core::audit::action;
use rampart_core::audit::Actor;
use rampart_core::identity::accounts::{Identity, NewApp};
use rampart_core::secret::Secret;
use rampart_proto::ids::Did;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

fn parse_did(did: &str) -> Result<Did, Error> {
    Did::parse(did).map_err(|_| Error::not_found("device"))
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

// ---- bindings and shares ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindBody {
    did: String,
    passcode: Option<Secret>,
    token: Option<Secret>,
}

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
    Ok((status, Json(json!({"did": did.as_str(), "role": role}))).into_response())
}

pub(crate) async fn list_bindings(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_bindings(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

pub(crate) async fn unbind(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    s.core.unbind(&u, did.as_str(), client_ip(&addr)).await?;
    Ok(Json(json!({"did": did.as_str(), "status": "unbound"})))
}

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

pub(crate) async fn passcode(
    State(s): State<AppState>,
    m: crate::developers::Manager,
    addr: Addr,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
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
    Ok(Json(json!({"did": did.as_str(), "passcode": p.expose()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareBody {
    user: String,
    role: Role,
}

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
    Ok((StatusCode::CREATED, Json(json!({"share_id": id}))).into_response())
}

pub(crate) async fn device_shares(
    State(s): State<AppState>,
    User(u): User,
    Path(did): Path<String>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    let rows = s.core.device_shares(&u, did.as_str()).await?;
    let n = rows.len();
    Ok(Json(json!({"data": rows, "meta": {"total": n}})))
}

pub(crate) async fn revoke_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path((did, id)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    s.core
        .revoke_share(&u, did.as_str(), &id, client_ip(&addr))
        .await?;
    Ok(Json(json!({"share_id": id, "status": "revoked"})))
}

pub(crate) async fn list_shares(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_shares(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

pub(crate) async fn accept_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s.core.accept_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(v).into_response())
}

pub(crate) async fn decline_share(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    s.core.decline_share(&u, &id, client_ip(&addr)).await?;
    Ok(Json(json!({"share_id": id, "status": "declined"})))
}
