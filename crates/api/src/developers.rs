//! Handlers of developer accounts, enterprises and the operator's account administration,
//! plus the owner-only product secret endpoints. Extractors: [`Developer`] (an `rdt_` access
//! token) and [`Manager`] (the operator's admin token or a developer), which product and device
//! handlers turn into a `tenancy::Caller` for `rampart-core` to decide on.
//!
//! No access rule lives here: every decision is `rampart_core::access::tenancy`'s.

use crate::auth::{bearer, Admin};
use crate::routes::{client_ip, page_of, Body, PageQuery, Q};
use crate::{AppState, ClientAddr, Error};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use rampart_core::access::tenancy::{Caller, EntRole};
use rampart_core::identity::developers::{DeveloperSession, SecondFactor, ACCESS_PREFIX};
use rampart_core::secret::Secret;
use rampart_proto::ids::ProductKey;
use serde::Deserialize;
use serde_json::{json, Value};

type Addr = Option<Extension<ClientAddr>>;

/// A developer signed in with an access token.
pub(crate) struct Developer(pub(crate) DeveloperSession);

impl FromRequestParts<AppState> for Developer {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Developer, Error> {
        let token = bearer(parts).ok_or_else(Error::unauthorized)?;
        Ok(Developer(state.core.authenticate_developer(token).await?))
    }
}

/// The operator (bootstrap admin token) or a developer: the callers of manufacturer endpoints.
/// End-user tokens are refused here (401), as before developers existed.
pub(crate) enum Manager {
    Operator,
    Developer(DeveloperSession),
}

impl Manager {
    pub(crate) fn caller(&self) -> Caller {
        match self {
            Manager::Operator => Caller::Operator,
            Manager::Developer(d) => Caller::Developer(d.developer_id.clone()),
        }
    }
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Manager, Error> {
        let token = bearer(parts).ok_or_else(Error::unauthorized)?;
        if token.starts_with(ACCESS_PREFIX) {
            return Ok(Manager::Developer(
                state.core.authenticate_developer(token).await?,
            ));
        }
        if state.core.check_admin_token(token).await? {
            Ok(Manager::Operator)
        } else {
            Err(Error::unauthorized())
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/developers", post(sign_up))
        .route("/v1/developers/activate", post(activate))
        .route("/v1/developers/activate/resend", post(resend))
        .route("/v1/developers/password/reset", post(reset_request))
        .route("/v1/developers/password/reset/confirm", post(reset_confirm))
        .route("/v1/developers/login", post(login))
        .route("/v1/developers/token/refresh", post(refresh))
        .route("/v1/developers/logout", post(logout))
        .route("/v1/developers/me", get(me))
        .route("/v1/developers/me/password", post(change_password))
        .route("/v1/developers/me/totp", post(totp_enrol))
        .route("/v1/developers/me/totp/confirm", post(totp_confirm))
        .route("/v1/developers/me/totp/disable", post(totp_disable))
        .route("/v1/developers/me/invites", get(my_invites))
        .route(
            "/v1/developers/me/invites/{invite_id}",
            delete(decline_invite),
        )
        .route(
            "/v1/developers/me/invites/{invite_id}/accept",
            post(accept_invite),
        )
        .route(
            "/v1/enterprises",
            post(create_enterprise).get(my_enterprises),
        )
        .route("/v1/enterprises/{id}", get(get_enterprise))
        .route("/v1/enterprises/{id}/members", get(members))
        .route(
            "/v1/enterprises/{id}/members/{developer_id}",
            put(set_role).delete(remove_member),
        )
        .route("/v1/enterprises/{id}/invites", post(invite))
        .route(
            "/v1/admin/developers",
            post(admin_create_developer).get(admin_list_developers),
        )
        .route("/v1/admin/developers/{id}", get(admin_get_developer))
        .route(
            "/v1/admin/developers/{id}/suspend",
            post(admin_suspend_developer),
        )
        .route(
            "/v1/admin/developers/{id}/unsuspend",
            post(admin_unsuspend_developer),
        )
        .route("/v1/admin/enterprises", post(admin_create_enterprise))
        .route(
            "/v1/admin/enterprises/{id}/suspend",
            post(admin_suspend_enterprise),
        )
        .route(
            "/v1/admin/enterprises/{id}/unsuspend",
            post(admin_unsuspend_enterprise),
        )
        .route("/v1/products/{product_key}/secret", get(product_secret))
        .route(
            "/v1/products/{product_key}/secret/rotate",
            post(rotate_product_secret),
        )
        .route(
            "/v1/products/{product_key}/factory-batches",
            post(factory_issue),
        )
}

// ---- accounts ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    email: String,
    password: Secret,
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

// ---- enterprises ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnterprise {
    name: String,
}

/// A developer creates an enterprise and becomes its owner; the operator creates one with no
/// member yet (and invites its owners).
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
        Manager::Operator => {
            s.core
                .operator_create_enterprise(&b.name, None, client_ip(&addr))
                .await?
        }
    };
    Ok((StatusCode::CREATED, Json(e)).into_response())
}

async fn my_enterprises(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Json<Value>, Error> {
    let v = s.core.my_enterprises(&d).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

async fn get_enterprise(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.enterprise_view(&m.caller(), &id).await?).into_response())
}

async fn members(
    State(s): State<AppState>,
    m: Manager,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let v = s.core.enterprise_members(&m.caller(), &id).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteBody {
    email: String,
    role: EntRole,
}

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
    Ok((StatusCode::CREATED, Json(json!({"invite_id": invite_id}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    role: EntRole,
}

async fn set_role(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
    Body(b): Body<RoleBody>,
) -> Result<Json<Value>, Error> {
    s.core
        .set_member_role(&m.caller(), &id, &dev, b.role, client_ip(&addr))
        .await?;
    Ok(Json(json!({"developer_id": dev, "role": b.role})))
}

async fn remove_member(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path((id, dev)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    s.core
        .remove_member(&m.caller(), &id, &dev, client_ip(&addr))
        .await?;
    Ok(Json(json!({"developer_id": dev, "status": "removed"})))
}

async fn my_invites(
    State(s): State<AppState>,
    Developer(d): Developer,
) -> Result<Json<Value>, Error> {
    let v = s.core.my_invites(&d).await?;
    let n = v.len();
    Ok(Json(json!({"data": v, "meta": {"total": n}})))
}

async fn accept_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let e = s.core.accept_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(e).into_response())
}

async fn decline_invite(
    State(s): State<AppState>,
    Developer(d): Developer,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    s.core.decline_invite(&d, &id, client_ip(&addr)).await?;
    Ok(Json(json!({"invite_id": id, "status": "declined"})))
}

// ---- operator ----

async fn admin_create_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Body(b): Body<SignUp>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_developer(&b.email, b.password, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeveloperQuery {
    email: Option<String>,
    page: Option<i64>,
    limit: Option<i64>,
}

async fn admin_list_developers(
    State(s): State<AppState>,
    _: Admin,
    Q(q): Q<DeveloperQuery>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = PageQuery::of(q.page, q.limit).resolve()?;
    let (rows, total) = s
        .core
        .list_developers(q.email.as_deref(), (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn admin_get_developer(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(s.core.developer_view(&id).await?).into_response())
}

async fn admin_suspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

async fn admin_unsuspend_developer(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_developer_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminNewEnterprise {
    name: String,
    owner_developer_id: String,
}

async fn admin_create_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Body(b): Body<AdminNewEnterprise>,
) -> Result<Response, Error> {
    let v = s
        .core
        .operator_create_enterprise(&b.name, Some(&b.owner_developer_id), client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn admin_suspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, true, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

async fn admin_unsuspend_enterprise(
    State(s): State<AppState>,
    _: Admin,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = s
        .core
        .set_enterprise_suspended(&id, false, client_ip(&addr))
        .await?;
    Ok(Json(v).into_response())
}

// ---- product secrets (owners and the operator) ----

fn parse_pk(pk: &str) -> Result<ProductKey, Error> {
    ProductKey::parse(pk).map_err(|_| Error::not_found("product"))
}

async fn product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<Value>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .read_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(
        json!({"product_key": pk.as_str(), "product_secret": secret.expose()}),
    ))
}

async fn rotate_product_secret(
    State(s): State<AppState>,
    m: Manager,
    addr: Addr,
    Path(pk): Path<String>,
) -> Result<Json<Value>, Error> {
    let pk = parse_pk(&pk)?;
    let secret = s
        .core
        .rotate_product_secret(&m.caller(), pk.as_str(), client_ip(&addr))
        .await?;
    Ok(Json(
        json!({"product_key": pk.as_str(), "product_secret": secret.expose()}),
    ))
}

/// Largest factory batch issued through the API (the CLI issues larger ones).
const API_MAX_BATCH: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    count: usize,
}

async fn factory_issue(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<BatchBody>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(
            &caller,
            pk.as_str(),
            rampart_core::access::tenancy::Act::Secrets,
        )
        .await?;
    if b.count == 0 || b.count > API_MAX_BATCH {
        return Err(Error::invalid(format!("count must be 1..={API_MAX_BATCH}")));
    }
    let (batch_id, ids) = s
        .core
        .factory_issue(pk.as_str(), b.count, &caller.actor())
        .await?;
    let identities: Vec<Value> = ids
        .iter()
        .map(|f| json!({"serial": f.serial, "device_secret": f.secret.expose()}))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"batch_id": batch_id, "identities": identities})),
    )
        .into_response())
}
