//! Routes and handlers. Every answer is JSON; lists page with `page`/`limit` and answer
//! `{"data": [...], "meta": {"page", "limit", "total"}}`.

use crate::accounts as acc;
use crate::auth::Principal;
use crate::developers::Manager;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use rampart_core::access::bindings::Need;
use rampart_core::audit::action;
use rampart_core::audit::Actor;
use rampart_core::device::products::NewProduct;
use rampart_core::device::registry::RegisterRequest;
use rampart_core::device::runtime::{CommandOutcome, CommandRequest};
use rampart_proto::ids::{Did, ProductKey};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::set_header::SetResponseHeaderLayer;

/// A JSON body whose rejections answer with our error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub(crate) struct Body<T>(pub(crate) T);

/// Query string with our error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub(crate) struct Q<T>(pub(crate) T);

pub(crate) fn client_ip(addr: &Option<Extension<ClientAddr>>) -> Option<String> {
    addr.as_ref()
        .map(|Extension(ClientAddr(a))| a.ip().to_string())
}

/// The Content-Security-Policy of every answer. The only HTML is the OAuth consent and error
/// pages (`crate::oauth`): no script, no style, no images, a form posting to this origin. There
/// is no `form-action`: after consent the server redirects the browser to the client's
/// `redirect_uri`, which `form-action 'self'` would block in some browsers.
pub(crate) const CSP: &str = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/products", post(create_product).get(list_products))
        .route("/v1/products/{product_key}", get(get_product))
        .route("/v1/products/{product_key}/allowlist", post(allowlist_add))
        .route(
            "/v1/products/{product_key}/allowlist/file",
            post(allowlist_upload),
        )
        .route("/v1/device/register", post(register))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{did}", get(get_device))
        .route("/v1/devices/{did}/history", get(history))
        .route("/v1/devices/{did}/commands", post(command))
        .route("/v1/devices/{did}/passcode", get(acc::passcode))
        .route("/v1/devices/{did}/reprovision", post(reprovision))
        .route("/v1/devices/{did}/disable", post(disable_device))
        .route("/v1/devices/{did}/enable", post(enable_device))
        .route("/v1/devices/{did}/bind-tokens", post(acc::bind_token))
        .route(
            "/v1/devices/{did}/shares",
            post(acc::create_share).get(acc::device_shares),
        )
        .route(
            "/v1/devices/{did}/shares/{share_id}",
            delete(acc::revoke_share),
        )
        .route("/v1/apps", post(acc::create_app))
        .route("/v1/users", post(acc::sign_up))
        .route("/v1/users/activate", post(acc::activate))
        .route("/v1/users/activate/resend", post(acc::resend))
        .route("/v1/users/me", get(acc::me))
        .route("/v1/users/me/password", post(acc::change_password))
        .route("/v1/users/password/reset", post(acc::reset_request))
        .route("/v1/users/password/reset/confirm", post(acc::reset_confirm))
        .route("/v1/login", post(acc::login))
        .route("/v1/token/refresh", post(acc::refresh))
        .route("/v1/logout", post(acc::logout))
        .route("/v1/logout/all", post(acc::logout_all))
        .route(
            "/v1/bindings",
            post(acc::bind).get(crate::oauth::list_bindings),
        )
        .route("/v1/bindings/{did}", delete(acc::unbind))
        .route("/v1/shares", get(acc::list_shares))
        .route("/v1/shares/{share_id}", delete(acc::decline_share))
        .route("/v1/shares/{share_id}/accept", post(acc::accept_share))
        .route("/v1/ws", get(crate::ws::ws))
        .route("/v1/developers/ws", get(crate::ws::developer_ws))
        .route("/v1/enterprise/events", get(crate::events::ws))
        .merge(crate::oauth::routes())
        .merge(crate::developers::routes())
        .merge(crate::openapi::routes())
        .merge(crate::enterprise::routes())
        .merge(crate::webhooks::routes())
        .fallback(|| async { Error::not_found("route") })
        .method_not_allowed_fallback(|| async {
            Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this path",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::count_calls,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.http.max_body_bytes,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.http.body_read_timeout,
        ))
        .layer(axum::middleware::from_fn(crate::limits::json_errors))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

pub(crate) async fn healthz(State(s): State<AppState>) -> Response {
    match s.core.store_health().await {
        Ok(backend) => Json(json!({"status": "ok", "store": backend})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// `/metrics` on the API listener: the admin token, or a request signed with an access key that
/// has the `metrics` scope. (The optional metrics listener serves it without either:
/// [`crate::metrics_router`].)
async fn metrics(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if crate::auth::bearer(&parts).is_some() {
        if let Err(e) = crate::auth::Admin::from_request_parts(&mut parts, &s).await {
            return e.into_response();
        }
    } else {
        let req = axum::extract::Request::from_parts(parts, body);
        let k = match crate::enterprise::EnterpriseKey::from_request(req, &s).await {
            Ok(k) => k,
            Err(refused) => return refused,
        };
        if let Err(e) = rampart_core::Core::require_scope(
            &k.key,
            rampart_core::access::access_keys::Scope::Metrics,
        ) {
            return Error::from(e).into_response();
        }
    }
    render_metrics(&s)
}

/// The metrics without any check, for the private metrics listener.
pub(crate) async fn open_metrics(State(s): State<AppState>) -> Response {
    render_metrics(&s)
}

fn render_metrics(s: &AppState) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => Error::not_found("metrics recorder").into_response(),
    }
}

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
async fn authorize(
    s: &AppState,
    p: &Principal,
    did: &str,
    need: Need,
    addr: &Option<Extension<ClientAddr>>,
) -> Result<Actor, Error> {
    match p {
        Principal::Admin => Ok(Actor::admin()),
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

pub(crate) fn page_of<T: serde::Serialize>(
    data: Vec<T>,
    page: i64,
    limit: i64,
    total: i64,
) -> Json<Value> {
    Json(json!({"data": data, "meta": {"page": page, "limit": limit, "total": total}}))
}

fn parse_pk(pk: &str) -> Result<ProductKey, Error> {
    ProductKey::parse(pk).map_err(|_| Error::not_found("product"))
}

pub(crate) fn parse_did(did: &str) -> Result<Did, Error> {
    Did::parse(did).map_err(|_| Error::not_found("device"))
}

/// The body is a `NewProduct` plus an optional `owner` (see `rampart_core::access::tenancy::OwnerSpec`).
async fn create_product(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Body(mut v): Body<Value>,
) -> Result<Response, Error> {
    let invalid =
        |e: serde_json::Error| Error::new(StatusCode::BAD_REQUEST, "INVALID_JSON", e.to_string());
    let owner = match v.as_object_mut().and_then(|o| o.remove("owner")) {
        Some(o) => Some(serde_json::from_value(o).map_err(invalid)?),
        None => None,
    };
    let p: NewProduct = serde_json::from_value(v).map_err(invalid)?;
    let created = s
        .core
        .create_product_as(&m.caller(), p, owner, client_ip(&addr))
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_products(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<Paging>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_products_as(&m.caller(), (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

async fn get_product(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
) -> Result<Response, Error> {
    let pk = parse_pk(&pk)?;
    s.core
        .authorize_product(
            &m.caller(),
            pk.as_str(),
            rampart_core::access::tenancy::Act::Read,
        )
        .await?;
    let p = s.core.product(pk.as_str()).await?;
    Ok(Json(&*p).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowlistBody {
    hardware_ids: Vec<String>,
}

/// The product `pk` names, once the caller is known to be allowed to manage it.
async fn managed_product(
    s: &AppState,
    m: &Manager,
    pk: &str,
) -> Result<(ProductKey, rampart_core::access::tenancy::Caller), Error> {
    let pk = parse_pk(pk)?;
    let caller = m.caller();
    s.core
        .authorize_product(
            &caller,
            pk.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    Ok((pk, caller))
}

async fn allowlist_add(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    Body(b): Body<AllowlistBody>,
) -> Result<Json<Value>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let added = s
        .core
        .allowlist_add(pk.as_str(), &b.hardware_ids, &caller.actor())
        .await?;
    Ok(Json(
        json!({"added": added, "submitted": b.hardware_ids.len()}),
    ))
}

/// An allowlist file: the caller's right to manage the product is checked before the body is
/// read; the body is read up to the upload cap (413 beyond it, without reading further).
async fn allowlist_upload(
    State(s): State<AppState>,
    m: Manager,
    Path(pk): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, Error> {
    let (pk, caller) = managed_product(&s, &m, &pk).await?;
    let cap = s.core.config().uploads.max_allowlist_bytes;
    let bytes = read_capped(body, &headers, cap).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let up = s
        .core
        .allowlist_upload(pk.as_str(), declared, bytes, &caller.actor())
        .await?;
    Ok(Json(json!(up)))
}

/// A request body of at most `cap` bytes: 413 `PAYLOAD_TOO_LARGE` as soon as the declared length
/// or the bytes received pass it.
async fn read_capped(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    cap: usize,
) -> Result<Vec<u8>, Error> {
    let too_large = || {
        Error::from(rampart_core::Error::TooLarge(format!(
            "the body may hold at most {cap} bytes"
        )))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("request body: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn register(
    State(s): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    Body(req): Body<RegisterRequest>,
) -> Result<Response, Error> {
    let r = s.core.register(&req, client_ip(&addr)).await?;
    Ok(Json(r).into_response())
}

/// The body of `POST /v1/devices/{did}/reprovision`; the body may be left out.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reprovision {
    expires_in_s: Option<i64>,
}

/// Open a single-use re-provisioning window for a device (admin, or a developer who may manage
/// its product).
async fn reprovision(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let r: Reprovision = if body.iter().all(u8::is_ascii_whitespace) {
        Reprovision::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::new(StatusCode::BAD_REQUEST, "INVALID_JSON", e.to_string()))?
    };
    let caller = m.caller();
    s.core
        .authorize_device_for(
            &caller,
            did.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    let until = s
        .core
        .open_reprovision(
            did.as_str(),
            r.expires_in_s
                .unwrap_or(rampart_core::device::registry::REPROVISION_DEFAULT_SECS),
            &caller.actor(),
            client_ip(&addr),
        )
        .await?;
    Ok(Json(json!({"did": did.as_str(), "expires_at": until})).into_response())
}

/// Disable (`on`) or enable a device (admin, or a developer who may manage its product).
async fn set_device_disabled(
    s: AppState,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    did: String,
    on: bool,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    let caller = m.caller();
    s.core
        .authorize_device_for(
            &caller,
            did.as_str(),
            rampart_core::access::tenancy::Act::Manage,
        )
        .await?;
    s.core
        .set_device_disabled(did.as_str(), on, &caller.actor(), client_ip(&addr))
        .await?;
    Ok(Json(json!({"did": did.as_str(), "disabled": on})).into_response())
}

async fn disable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, true).await
}

async fn enable_device(
    State(s): State<AppState>,
    m: Manager,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    set_device_disabled(s, m, addr, did, false).await
}

async fn list_devices(
    State(s): State<AppState>,
    m: Manager,
    Q(q): Q<Paging>,
) -> Result<Json<Value>, Error> {
    let (page, limit) = q.resolve()?;
    // A developer's filter must be a well-formed key (the operator's is only compared).
    if let (Manager::Developer(_), Some(pk)) = (&m, q.product_key.as_deref()) {
        parse_pk(pk)?;
    }
    let (rows, total) = s
        .core
        .list_devices_for(
            &m.caller(),
            q.product_key.as_deref(),
            (page - 1) * limit,
            limit,
        )
        .await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|d| {
            json!({"did": d.did, "product_key": d.product_key, "hardware_id": d.hardware_id,
                   "online": d.online, "last_seen": d.last_seen, "created_at": d.created_at})
        })
        .collect();
    Ok(page_of(data, page, limit, total))
}

async fn get_device(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    Ok(Json(s.core.device_view(did.as_str()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    point: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Q(q): Q<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    let did = parse_did(&did)?;
    authorize(&s, &p, did.as_str(), Need::Read, &addr).await?;
    history_page(&s, did.as_str(), &q).await
}

/// The answer of a history query on a device the caller may read.
pub(crate) async fn history_page(
    s: &AppState,
    did: &str,
    q: &HistoryQuery,
) -> Result<Json<Value>, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit must be 1..=1000"));
    }
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(Error::invalid("from must not be after to"));
    }
    let point = q.point.as_deref().filter(|p| !p.is_empty());
    let rows = s.core.device_history(did, point, from, to, limit).await?;
    let n = rows.len();
    Ok(Json(
        json!({"data": rows, "meta": {"limit": limit, "count": n}}),
    ))
}

async fn command(
    State(s): State<AppState>,
    p: Principal,
    addr: Option<Extension<ClientAddr>>,
    Path(did): Path<String>,
    Body(req): Body<CommandRequest>,
) -> Result<Response, Error> {
    let did = parse_did(&did)?;
    // Erasing a device is its owner's decision (a third party needs `devices:admin`).
    let need = match req.action {
        Some(
            rampart_proto::command::Action::FactoryReset | rampart_proto::command::Action::Wipe,
        ) => Need::Own,
        _ => Need::Control,
    };
    let actor = authorize(&s, &p, did.as_str(), need, &addr).await?;
    let outcome = s
        .core
        .send_command(did.as_str(), req, &actor, client_ip(&addr))
        .await?;
    Ok(command_answer(outcome))
}

/// 200 with the device's ack, or 202 for a command queued for a parked session.
pub(crate) fn command_answer(outcome: CommandOutcome) -> Response {
    match outcome {
        CommandOutcome::Acked(ack) => Json(json!(ack)).into_response(),
        CommandOutcome::Queued { id } => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": "queued"})),
        )
            .into_response(),
    }
}
