//! OAuth2 and OpenID Connect: the authorisation server (`/oauth/authorize` with its consent
//! page and JSON approval, `/oauth/token`, `/oauth/revoke`), client management by its owner
//! ([`clients`]), the user's grants, the scope checks a third-party access token meets on the
//! device endpoints, and login through an OpenID Connect provider ([`oidc`]).
//!
//! `/oauth/token` and `/oauth/revoke` answer RFC 6749 errors (`{"error", "error_description"}`);
//! everything else answers `api::Error`. The consent page is a small server-rendered form: the
//! user signs in on it with their password (no token ever travels in a URL), and a double-submit
//! cookie guards the form against cross-site posts.
//!
//! Grants, scopes and token lifetimes are `rampart_core::federation::oauth`'s; this module never decides
//! what a token may do, it only asks and renders. Each handler's `#[utoipa::path]` and answer
//! types make its part of the OpenAPI document.

use rampart_core::audit::action;
pub(crate) mod clients;
pub(crate) mod oidc;

use crate::error::ErrorCode;
use crate::extract::{client_ip, Body, Principal, User, Q};
use crate::openapi::ApiRouter;
use crate::v1::schemas::{string_enum, Millis, Page, PageParams, Sorted};
use crate::v1::{page_of, PageQuery};
use crate::{AppState, ClientAddr, Error};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use base64::Engine;
use rampart_core::access::bindings::Need;
use rampart_core::audit::{Actor, AuditEvent};
use rampart_core::federation::oauth::{
    AuthRequest, AuthorizeError, AuthorizeParams, OAuthSession, Scopes, TokenError,
};
use rampart_core::secret::{random_hex, Secret};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use utoipa::openapi::{RefOr, Response as ApiResponse};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

type Addr = Option<Extension<ClientAddr>>;

/// The CSRF cookie of the consent form (`__Host-`: https only, this host only, path `/`).
const CSRF_COOKIE: &str = "__Host-rampart_consent";

/// The routes of this module (merged into the main router).
pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(clients::register_client, clients::list_clients))
        .routes(routes!(
            clients::get_client,
            clients::update_client,
            clients::delete_client
        ))
        .routes(routes!(clients::rotate_client_secret))
        .routes(routes!(list_grants))
        .routes(routes!(revoke_grant))
        .routes(routes!(authorize_page, approve_json))
        .routes(routes!(consent))
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(oidc::start))
        .routes(routes!(oidc::callback))
}

// ---- the answers and bodies ----

/// The RFC 6749 error answers of `/oauth/token` and `/oauth/revoke`, by status: `{"error",
/// "error_description"}` with one of the listed codes.
fn oauth_errors(by_status: &[(u16, &[&str])]) -> BTreeMap<String, RefOr<ApiResponse>> {
    by_status
        .iter()
        .map(|(status, codes)| {
            let mut codes = codes.to_vec();
            codes.sort_unstable();
            let list: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
            let r = json!({
                "description": format!("RFC 6749 error: {}", list.join(", ")),
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["error", "error_description"],
                    "properties": {
                        "error": {"type": "string", "enum": codes},
                        "error_description": {"type": "string"}
                    }
                }}}
            });
            let r: ApiResponse =
                serde_json::from_value(r).expect("an RFC 6749 error is a valid OpenAPI response");
            (status.to_string(), RefOr::T(r))
        })
        .collect()
}

/// The errors of `POST /oauth/token`.
pub(crate) struct TokenErrors;

impl utoipa::IntoResponses for TokenErrors {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        oauth_errors(&[
            (
                400,
                &[
                    "invalid_request",
                    "invalid_grant",
                    "unsupported_grant_type",
                    "invalid_scope",
                ],
            ),
            (401, &["invalid_client"]),
            (500, &["server_error"]),
        ])
    }
}

/// The errors of `POST /oauth/revoke`.
pub(crate) struct RevokeErrors;

impl utoipa::IntoResponses for RevokeErrors {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        oauth_errors(&[
            (400, &["invalid_request"]),
            (401, &["invalid_client"]),
            (500, &["server_error"]),
        ])
    }
}

/// The token request (RFC 6749 §4.1.3, §6): the form [`token`] reads by hand.
#[derive(ToSchema)]
#[schema(as = TokenRequest, example = json!({"grant_type": "authorization_code",
    "code": "rac_5e0b...", "redirect_uri": "https://dash.example.com/callback",
    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}))]
#[allow(dead_code)] // only described
pub(crate) struct TokenForm {
    grant_type: GrantType,
    #[schema(required = false)]
    code: String,
    #[schema(required = false)]
    redirect_uri: String,
    #[schema(required = false)]
    code_verifier: String,
    #[schema(required = false)]
    refresh_token: String,
    #[schema(required = false)]
    scope: String,
    #[schema(required = false)]
    client_id: String,
    #[schema(required = false)]
    client_secret: String,
}

string_enum!(
    /// The grants `/oauth/token` serves.
    GrantType,
    "GrantType",
    ["authorization_code", "refresh_token"]
);

/// The revocation request (RFC 7009 §2.1): the form [`revoke`] reads by hand.
#[derive(ToSchema)]
#[schema(as = RevokeRequest, example = json!({"token": "roa_2c8f...", "token_type_hint": "access_token"}))]
#[allow(dead_code)] // only described
pub(crate) struct RevokeForm {
    token: String,
    #[schema(required = false)]
    token_type_hint: String,
    #[schema(required = false)]
    client_id: String,
    #[schema(required = false)]
    client_secret: String,
}

/// `rampart_core::federation::oauth::OAuthTokens`: a token response (RFC 6749 §5.1).
#[derive(ToSchema)]
#[schema(as = OAuthTokens, example = oauth_tokens)]
#[allow(dead_code)] // only described: the handler answers the core's `OAuthTokens`
pub(crate) struct OAuthTokensSchema {
    access_token: String,
    token_type: BearerType,
    /// seconds
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

string_enum!(BearerType, "BearerType", ["Bearer"]);

fn oauth_tokens() -> rampart_core::federation::oauth::OAuthTokens {
    rampart_core::federation::oauth::OAuthTokens {
        access_token: Secret::new("roa_2c8f...".into()),
        token_type: "Bearer",
        expires_in: 3600,
        refresh_token: Secret::new("ror_a41d...".into()),
        scope: "devices:read".into(),
    }
}

/// The query of an authorisation request (RFC 6749 §4.1.1, with PKCE); the handler reads it
/// itself, so a bad one answers the HTML error page.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only described: `AuthorizeParams` reads them
pub(crate) struct AuthorizeQuery {
    /// must be `code`
    #[param(inline, required = false)]
    response_type: CodeType,
    /// the client
    #[param(required = false)]
    client_id: String,
    /// a redirect URI registered for the client
    #[param(required = false)]
    redirect_uri: String,
    /// space-separated: `devices:read`, `devices:control`, `devices:admin`
    #[param(required = false)]
    scope: String,
    /// echoed back to the client
    #[param(required = false)]
    state: String,
    /// PKCE challenge
    #[param(required = false)]
    code_challenge: String,
    /// must be `S256`
    #[param(inline, required = false)]
    code_challenge_method: S256,
}

string_enum!(CodeType, "CodeType", ["code"]);
string_enum!(S256, "S256", ["S256"]);

/// The consent form: the authorisation request, `csrf` (matching the cookie), the user's
/// sign-in, the approved scopes and the decision.
#[derive(ToSchema)]
#[schema(as = ConsentForm, example = json!({"response_type": "code", "client_id": "rcl_9d1e",
    "redirect_uri": "https://dash.example.com/callback", "scope": "devices:read", "state": "xyz",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
    "csrf": "3b9f...", "username": "ada@example.com", "password": "correct horse battery",
    "approve": ["devices:read"], "decision": "approve"}))]
#[allow(dead_code)] // only described: `consent` reads the form by hand
pub(crate) struct ConsentForm {
    #[schema(required = false)]
    response_type: String,
    #[schema(required = false)]
    client_id: String,
    #[schema(required = false)]
    redirect_uri: String,
    #[schema(required = false)]
    scope: String,
    #[schema(required = false)]
    state: String,
    #[schema(required = false)]
    code_challenge: String,
    #[schema(required = false)]
    code_challenge_method: String,
    #[schema(required = false)]
    csrf: String,
    #[schema(required = false)]
    username: String,
    #[schema(required = false)]
    password: String,
    /// a scope the user approves (repeatable)
    #[schema(required = false)]
    approve: Vec<String>,
    #[schema(required = false)]
    decision: Decision,
}

string_enum!(Decision, "Decision", ["approve", "deny"]);

/// Where to send the user agent after the JSON approval: with `code` and `state` when approved.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code": "rac_5e0b...",
    "redirect_to": "https://dash.example.com/callback?code=rac_5e0b...&state=xyz", "state": "xyz"}))]
pub(crate) struct Approved {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    code: Option<String>,
    redirect_to: String,
    /// the request's `state` (null when it had none)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    state: Option<Option<String>>,
}

/// `rampart_store::OAuthGrantView`: a grant as its user sees it.
#[derive(ToSchema)]
#[schema(as = OAuthGrant, example = json!({"grant_id": "rgr_6b1c", "client_id": "rcl_9d1e",
    "client_name": "Home dashboard", "scope": "devices:read", "created_at": 1765000000000_i64,
    "expires_at": 1772776000000_i64}))]
#[allow(dead_code)] // only described: the handler answers the store's view
pub(crate) struct GrantSchema {
    grant_id: String,
    client_id: String,
    client_name: String,
    scope: String,
    #[schema(value_type = Millis)]
    created_at: i64,
    #[schema(value_type = Millis)]
    expires_at: i64,
}

/// The grant is revoked.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"grant_id": "rgr_6b1c", "status": "revoked"}))]
pub(crate) struct GrantRevoked {
    grant_id: String,
    status: crate::v1::bindings::RevokedStatus,
}

crate::errors!(ApproveErrors: Unauthorized, InvalidJson, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, InvalidClient, InvalidScope, UnsupportedResponseType, Internal);
crate::errors!(GrantListErrors: Unauthorized, InvalidRequest, Internal);
crate::errors!(GrantRevokeErrors: Unauthorized, NotFound, Internal);
crate::errors!(ListBindingsErrors: Unauthorized, InvalidRequest, InsufficientScope, Internal);

// ---- RFC 6749 errors ----

/// An RFC 6749 §5.2 error answer.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> OAuthError {
        match e {
            TokenError::InvalidRequest(m) => OAuthError::new("invalid_request", m),
            TokenError::InvalidClient => OAuthError {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client",
                description: "client authentication failed".into(),
            },
            TokenError::InvalidGrant(m) => OAuthError::new("invalid_grant", m),
            TokenError::UnsupportedGrantType => OAuthError::new(
                "unsupported_grant_type",
                "supported: authorization_code, refresh_token",
            ),
            TokenError::InvalidScope(m) => OAuthError::new("invalid_scope", m),
            TokenError::Internal(e) => {
                tracing::error!(error = %e, "internal error on an OAuth endpoint");
                OAuthError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    error: "server_error",
                    description: "internal error".into(),
                }
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"rampart\""),
            );
        }
        r
    }
}

// ---- forms and client authentication ----

/// An `application/x-www-form-urlencoded` body: each name once, except those in `multi`.
fn parse_form(
    headers: &HeaderMap,
    body: &[u8],
    multi: &[&str],
) -> Result<HashMap<String, Vec<String>>, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            "invalid_request",
            "expected Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let e = out.entry(k.to_string()).or_default();
        if !e.is_empty() && !multi.contains(&k.as_ref()) {
            return Err(OAuthError::new(
                "invalid_request",
                format!("parameter `{k}` given more than once"),
            ));
        }
        e.push(v.into_owned());
    }
    Ok(out)
}

fn one<'a>(f: &'a HashMap<String, Vec<String>>, k: &str) -> Option<&'a str> {
    f.get(k)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Decode one `application/x-www-form-urlencoded` component (RFC 6749 §2.3.1 encodes the Basic
/// credentials this way).
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client's id and secret, by HTTP Basic or by form fields (exactly one way). A public
/// client sends its `client_id` alone (or Basic with an empty password): no secret.
fn client_credentials(
    headers: &HeaderMap,
    f: &HashMap<String, Vec<String>>,
) -> Result<(String, Option<Secret>), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let in_form = (one(f, "client_id"), one(f, "client_secret"));
    match (basic, in_form) {
        (Some(b), (_, None)) => {
            let invalid = || OAuthError::from(TokenError::InvalidClient);
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| invalid())?;
            let text = String::from_utf8(raw).map_err(|_| invalid())?;
            let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
            let id = form_decode(id).ok_or_else(invalid)?;
            let secret = form_decode(secret).ok_or_else(invalid)?;
            if let Some(fid) = in_form.0 {
                if fid != id {
                    return Err(OAuthError::new(
                        "invalid_request",
                        "client_id differs from the Basic credentials",
                    ));
                }
            }
            Ok((
                id,
                Some(Secret::new(secret)).filter(|s| !s.expose().is_empty()),
            ))
        }
        (Some(_), (_, Some(_))) => Err(OAuthError::new(
            "invalid_request",
            "use one client authentication method, not two",
        )),
        (None, (Some(id), secret)) => {
            Ok((id.to_owned(), secret.map(|s| Secret::new(s.to_owned()))))
        }
        (None, (None, _)) => Err(TokenError::InvalidClient.into()),
    }
}

// ---- token and revocation endpoints ----

#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    summary = "Exchange a code or a refresh token (RFC 6749)",
    description = "Client authentication by HTTP Basic or by `client_id`/`client_secret` form \
        fields (one of them).",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "the tokens", body = OAuthTokensSchema), TokenErrors),
    security(("client_basic" = [])))]
pub(crate) async fn token(
    State(s): State<AppState>,
    addr: Addr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match token_inner(&s, client_ip(&addr), &headers, &body).await {
        Ok(t) => (
            [(header::PRAGMA, HeaderValue::from_static("no-cache"))],
            Json(t),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn token_inner(
    s: &AppState,
    ip: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<rampart_core::federation::oauth::OAuthTokens, OAuthError> {
    let f = parse_form(headers, body, &[])?;
    let (id, secret) = client_credentials(headers, &f)?;
    let client = s
        .core
        .authenticate_client(&id, secret.as_ref().map(Secret::expose), ip.clone())
        .await?;
    let need = |k: &str| {
        one(&f, k).ok_or_else(|| OAuthError::new("invalid_request", format!("`{k}` is required")))
    };
    match one(&f, "grant_type") {
        Some("authorization_code") => Ok(s
            .core
            .exchange_code(
                &client,
                need("code")?,
                need("redirect_uri")?,
                need("code_verifier")?,
                ip,
            )
            .await?),
        Some("refresh_token") => Ok(s
            .core
            .refresh_grant(&client, need("refresh_token")?, one(&f, "scope"), ip)
            .await?),
        Some(_) => Err(TokenError::UnsupportedGrantType.into()),
        None => Err(OAuthError::new(
            "invalid_request",
            "`grant_type` is required",
        )),
    }
}

/// RFC 7009: 200 whether or not the token was known.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", summary = "Revoke a token (RFC 7009)",
    description = "200 whether or not the token was known.",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "revoked (or unknown); empty body"), RevokeErrors),
    security(("client_basic" = [])))]
pub(crate) async fn revoke(
    State(s): State<AppState>,
    addr: Addr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r: Result<(), OAuthError> = async {
        let f = parse_form(&headers, &body, &[])?;
        let (id, secret) = client_credentials(&headers, &f)?;
        let ip = client_ip(&addr);
        let client = s
            .core
            .authenticate_client(&id, secret.as_ref().map(Secret::expose), ip.clone())
            .await?;
        let t = one(&f, "token")
            .ok_or_else(|| OAuthError::new("invalid_request", "`token` is required"))?;
        s.core.revoke_oauth_token(&client, t, ip).await?;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

// ---- the authorisation endpoint ----

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title></head>\
         <body>\n{body}\n</body></html>\n",
        esc(title)
    );
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html(
        status,
        "Authorisation failed",
        &format!("<h1>Authorisation failed</h1>\n<p>{}</p>", esc(message)),
    )
}

fn scope_label(s: &str) -> &'static str {
    match s {
        Scopes::READ => "see your devices, their state and history",
        Scopes::ADMIN => "factory-reset or wipe the devices you own: this erases them and ends every binding and share",
        _ => "send commands to the devices you may control",
    }
}

/// The consent page, with a fresh CSRF cookie.
fn consent_page(req: &AuthRequest, p: &AuthorizeParams, notice: Option<&str>) -> Response {
    let csrf = random_hex(32);
    let hidden = [
        ("response_type", p.response_type.as_deref()),
        ("client_id", p.client_id.as_deref()),
        ("redirect_uri", p.redirect_uri.as_deref()),
        ("scope", p.scope.as_deref()),
        ("state", p.state.as_deref()),
        ("code_challenge", p.code_challenge.as_deref()),
        ("code_challenge_method", p.code_challenge_method.as_deref()),
        ("csrf", Some(csrf.as_str())),
    ];
    let mut body = format!(
        "<h1>{} wants to use your Rampart devices</h1>\n",
        esc(&req.client_name)
    );
    if let Some(n) = notice {
        body.push_str(&format!(
            "<p role=\"alert\"><strong>{}</strong></p>\n",
            esc(n)
        ));
    }
    body.push_str("<form method=\"post\" action=\"/oauth/authorize/consent\">\n");
    for (k, v) in hidden {
        if let Some(v) = v {
            body.push_str(&format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">\n",
                esc(v)
            ));
        }
    }
    body.push_str("<fieldset><legend>It asks to</legend>\n");
    let everyday = Scopes {
        admin: false,
        ..req.scopes
    };
    for s in everyday.as_string().split(' ').filter(|s| !s.is_empty()) {
        body.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"approve\" value=\"{s}\" checked> {} (<code>{s}</code>)</label><br>\n",
            scope_label(s)
        ));
    }
    body.push_str("</fieldset>\n");
    // The destructive scope is shown on its own and left unticked: the user opts in.
    if req.scopes.admin {
        let s = Scopes::ADMIN;
        body.push_str(&format!(
            "<fieldset id=\"destructive\"><legend>It also asks to erase devices</legend>\n\
             <p><strong>Only allow this if you trust it to erase your devices.</strong></p>\n\
             <label><input type=\"checkbox\" name=\"approve\" value=\"{s}\"> {} (<code>{s}</code>)</label>\n",
            scope_label(s)
        ));
    }
    body.push_str(&format!(
        "{}<p>After you answer you go back to <code>{}</code>.</p>\n\
         <fieldset><legend>Sign in to answer</legend>\n\
         <label>E-mail or phone <input name=\"username\" autocomplete=\"username\"></label><br>\n\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label>\n\
         </fieldset>\n\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n</form>",
        if req.scopes.admin { "</fieldset>\n" } else { "" },
        esc(&req.redirect_uri)
    ));
    let mut r = html(StatusCode::OK, "Authorise access", &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=900"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn authorize_failure(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::BadClient(m) => error_page(StatusCode::BAD_REQUEST, &m),
        e @ AuthorizeError::Redirect { .. } => match e.redirect_url() {
            Some(u) => Redirect::to(&u).into_response(),
            None => error_page(StatusCode::BAD_REQUEST, "invalid request"),
        },
        AuthorizeError::Internal(e) => {
            tracing::error!(error = %e, "internal error on /oauth/authorize");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `GET /oauth/authorize`: check the request, then show the consent page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth",
    summary = "The consent page of an authorisation request",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "the consent page (sets the CSRF cookie)",
            content_type = "text/html", body = String),
        (status = 303, description = "back to the client with `error` (a bad request after the \
            client was recognised)", headers(("Location" = String))),
        (status = 400, description = "an HTML error page: unknown client, unregistered redirect \
            URI, malformed request", content_type = "text/html", body = String),
        (status = 500, description = "an HTML error page", content_type = "text/html",
            body = String)))]
pub(crate) async fn authorize_page(
    State(s): State<AppState>,
    q: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = q else {
        return error_page(StatusCode::BAD_REQUEST, "malformed authorisation request");
    };
    match s.core.check_authorize(&p).await {
        Ok(req) => consent_page(&req, &p, None),
        Err(e) => authorize_failure(e),
    }
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Back to the client once the user answered; the form's CSRF cookie is spent.
fn answered(url: &str) -> Response {
    let mut r = Redirect::to(url).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-rampart_consent=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// `POST /oauth/authorize/consent`: the consent form (CSRF cookie, password sign-in, decision).
#[utoipa::path(post, path = "/oauth/authorize/consent", tag = "oauth",
    summary = "Answer the consent form",
    description = "The form of the consent page: the authorisation request, `csrf` (matching the \
        cookie), `username`, `password`, `approve` (repeatable scope) and `decision`.",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "back to the client with `code` and `state`, or \
            `error=access_denied`", headers(("Location" = String))),
        (status = 200, description = "the consent page again, with a notice (no scope chosen, \
            inactive account)", content_type = "text/html", body = String),
        (status = 400, description = "an HTML error page: malformed form or authorisation request",
            content_type = "text/html", body = String),
        (status = 401, description = "the consent page again: wrong e-mail, phone or password",
            content_type = "text/html", body = String),
        (status = 403, description = "an HTML error page: the CSRF cookie does not match",
            content_type = "text/html", body = String),
        (status = 500, description = "an HTML error page", content_type = "text/html",
            body = String)))]
pub(crate) async fn consent(
    State(s): State<AppState>,
    addr: Addr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(f) = parse_form(&headers, &body, &["approve"]) else {
        return error_page(StatusCode::BAD_REQUEST, "malformed form");
    };
    let sent = one(&f, "csrf").unwrap_or("");
    let held = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    let same: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), held.as_bytes()).into();
    if sent.len() != 64 || !same {
        return error_page(
            StatusCode::FORBIDDEN,
            "this form has expired or did not come from this page; start again from the application",
        );
    }
    let field = |k: &str| one(&f, k).map(str::to_owned);
    let p = AuthorizeParams {
        response_type: field("response_type"),
        client_id: field("client_id"),
        redirect_uri: field("redirect_uri"),
        scope: field("scope"),
        state: field("state"),
        code_challenge: field("code_challenge"),
        code_challenge_method: field("code_challenge_method"),
    };
    let req = match s.core.check_authorize(&p).await {
        Ok(r) => r,
        Err(e) => return authorize_failure(e),
    };
    let ip = client_ip(&addr);
    if one(&f, "decision") == Some("deny") {
        return answered(&s.core.deny_authorize(&req, None, ip).await);
    }
    let approved = Scopes::parse(&f.get("approve").map(|v| v.join(" ")).unwrap_or_default())
        .unwrap_or_default();
    if approved.is_empty() || !req.scopes.covers(approved) {
        return consent_page(&req, &p, Some("Choose at least one permission, or deny."));
    }
    let username = one(&f, "username").unwrap_or("");
    let pw = Secret::new(one(&f, "password").unwrap_or("").to_owned());
    let user_id = match s.core.consent_login(username, pw, ip.clone()).await {
        Ok(u) => u,
        Err(rampart_core::Error::AccountNotActive) => {
            return consent_page(&req, &p, Some("This account is not activated yet."))
        }
        Err(rampart_core::Error::LoginFailed) => {
            let mut r = consent_page(&req, &p, Some("Wrong e-mail, phone or password."));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return r;
        }
        Err(rampart_core::Error::Busy(_)) => {
            let mut r = consent_page(&req, &p, Some("The server is busy; try again shortly."));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            return r;
        }
        Err(e) => {
            tracing::error!(error = %e, "consent sign-in failed");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    match s.core.approve_authorize(&req, &user_id, approved, ip).await {
        Ok(u) => answered(&u),
        Err(e) => {
            tracing::error!(error = %e, "recording a grant failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The body of the JSON approval: the authorisation request, the decision, and optionally the
/// scopes approved (a subset of those requested; all of them when absent). Our own API, not the
/// browser-facing RFC 6749 request, so unknown fields are refused (no `flatten`: serde cannot
/// combine it with `deny_unknown_fields`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"response_type": "code", "client_id": "rcl_9d1e",
    "redirect_uri": "https://dash.example.com/callback", "scope": "devices:read devices:control",
    "state": "xyz", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    "code_challenge_method": "S256", "decision": "approve", "approved_scope": "devices:read"}))]
pub(crate) struct Approval {
    #[schema(value_type = String, required = false)]
    response_type: Option<String>,
    #[schema(value_type = String, required = false)]
    client_id: Option<String>,
    #[schema(value_type = String, required = false)]
    redirect_uri: Option<String>,
    #[schema(value_type = String, required = false)]
    scope: Option<String>,
    #[schema(value_type = String, required = false)]
    state: Option<String>,
    #[schema(value_type = String, required = false)]
    code_challenge: Option<String>,
    #[schema(value_type = String, required = false)]
    code_challenge_method: Option<String>,
    #[serde(default)]
    #[schema(value_type = Decision, inline, required = false, default = "approve")]
    decision: Option<String>,
    /// a subset of `scope`; all of it when absent
    #[serde(default)]
    #[schema(value_type = String, required = false)]
    approved_scope: Option<String>,
}

impl Approval {
    fn params(&self) -> AuthorizeParams {
        AuthorizeParams {
            response_type: self.response_type.clone(),
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scope: self.scope.clone(),
            state: self.state.clone(),
            code_challenge: self.code_challenge.clone(),
            code_challenge_method: self.code_challenge_method.clone(),
        }
    }
}

/// `POST /oauth/authorize`: an app approves (or denies) on behalf of its signed-in user, with the
/// user's own access token. Answers where to send the user agent.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    summary = "Approve or deny an authorisation request as the signed-in user",
    description = "For apps with the user's own token. A 400 for a recognised client also carries \
        `redirect_to`.",
    request_body = Approval,
    responses((status = 200, description = "where to send the user agent (with `code` and `state` \
        when approved)", body = Approved), ApproveErrors),
    security(("user" = [])))]
pub(crate) async fn approve_json(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Body(b): Body<Approval>,
) -> Result<Response, Error> {
    let ip = client_ip(&addr);
    let req = match s.core.check_authorize(&b.params()).await {
        Ok(r) => r,
        Err(e) => {
            let url = e.redirect_url().unwrap_or_default();
            return match e {
                AuthorizeError::BadClient(m) => {
                    Err(Error::new(crate::error::ErrorCode::InvalidClient, m))
                }
                AuthorizeError::Internal(e) => Err(e.into()),
                AuthorizeError::Redirect {
                    error, description, ..
                } => {
                    let code = match error {
                        "invalid_scope" => ErrorCode::InvalidScope,
                        "unsupported_response_type" => ErrorCode::UnsupportedResponseType,
                        _ => ErrorCode::InvalidRequest,
                    };
                    let body = json!({"error": {"code": code.as_str(), "message": description}, "redirect_to": url});
                    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
                }
            };
        }
    };
    match b.decision.as_deref().unwrap_or("approve") {
        "approve" => {}
        "deny" => {
            let url = s.core.deny_authorize(&req, Some(&u.user_id), ip).await;
            let answer = Approved {
                code: None,
                redirect_to: url,
                state: None,
            };
            return Ok(Json(answer).into_response());
        }
        _ => return Err(Error::invalid("decision: `approve` or `deny`")),
    }
    let approved = match b.approved_scope.as_deref() {
        None => req.scopes,
        Some(a) => Scopes::parse(a)
            .map_err(|x| Error::invalid(format!("approved_scope: unknown scope `{x}`")))?,
    };
    let url = s
        .core
        .approve_authorize(&req, &u.user_id, approved, ip)
        .await?;
    let code = url::Url::parse(&url)
        .ok()
        .and_then(|x| {
            x.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let answer = Approved {
        code: Some(code),
        redirect_to: url,
        state: Some(req.state),
    };
    Ok(Json(answer).into_response())
}

// ---- the user's grants ----

#[utoipa::path(get, path = "/v1/oauth/grants", tag = "oauth",
    summary = "The third-party grants of the user", params(PageParams),
    responses((status = 200, description = "a page of grants", body = Page<GrantSchema>),
        GrantListErrors),
    security(("user" = [])))]
pub(crate) async fn list_grants(
    State(s): State<AppState>,
    User(u): User,
    Q(q): Q<PageQuery>,
) -> Result<Sorted<Page<impl serde::Serialize>>, Error> {
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_oauth_grants(&u.user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

#[utoipa::path(delete, path = "/v1/oauth/grants/{grant_id}", tag = "oauth",
    summary = "Revoke a grant and its tokens",
    responses((status = 200, description = "revoked", body = GrantRevoked), GrantRevokeErrors),
    security(("user" = [])))]
pub(crate) async fn revoke_grant(
    State(s): State<AppState>,
    User(u): User,
    addr: Addr,
    Path(id): Path<String>,
) -> Result<Json<GrantRevoked>, Error> {
    s.core.revoke_user_grant(&u, &id, client_ip(&addr)).await?;
    Ok(Json(GrantRevoked {
        grant_id: id,
        status: crate::v1::bindings::RevokedStatus::Revoked,
    }))
}

// ---- third-party tokens on the device endpoints ----

/// A third-party token on a device endpoint: first its scopes (`devices:read` to read,
/// `devices:control` to command), then the granting user's own access. Refusals are audited.
pub(crate) async fn authorize_device(
    s: &AppState,
    o: &OAuthSession,
    did: &str,
    need: Need,
    addr: &Addr,
) -> Result<Actor, Error> {
    let (scoped, needed) = match need {
        Need::Read => (o.scopes.read, Scopes::READ),
        Need::Control => (o.scopes.control, Scopes::CONTROL),
        Need::Own => (o.scopes.admin, Scopes::ADMIN),
    };
    let outcome = if !scoped {
        Err(Error::new(
            crate::error::ErrorCode::InsufficientScope,
            format!("this token's scope does not allow this (needs `{needed}`)"),
        ))
    } else {
        s.core
            .authorize_device(&o.user_id, did, need)
            .await
            .map_err(Error::from)
    };
    match outcome {
        Ok(_) => {
            audit_grant_use(s, o, format!("device:{did}"), needed, addr).await;
            Ok(o.actor())
        }
        Err(e) => {
            let mut ev = AuditEvent::new(
                &o.actor(),
                action::DEVICE_ACCESS,
                &format!("denied: {}", e.code),
            )
            .target(format!("device:{did}"))
            .detail(format!("{need:?}"));
            if let Some(ip) = client_ip(addr) {
                ev = ev.source_ip(ip);
            }
            s.core.audit(ev).await;
            Err(e)
        }
    }
}

/// What a third party did with a grant is on record like what it was refused: the client and the
/// user (the actor), what it reached (the target), the grant and the scope it used.
async fn audit_grant_use(s: &AppState, o: &OAuthSession, target: String, scope: &str, addr: &Addr) {
    let ev = AuditEvent::new(&o.actor(), action::OAUTH_ACCESS, "ok")
        .target(target)
        .source_ip_opt(client_ip(addr))
        .detail(format!("grant={} scope={scope}", o.grant_id));
    s.core.audit(ev).await;
}

/// `GET /v1/bindings` for the user's own token or a third-party token with `devices:read`.
#[utoipa::path(get, path = "/v1/bindings", tag = "bindings",
    summary = "The user's devices, newest first",
    description = "An admin or developer token answers 401.", params(PageParams),
    responses((status = 200, description = "a page of bindings",
        body = Page<crate::v1::bindings::BindingSchema>), ListBindingsErrors),
    security(("user" = []), ("oauth" = ["devices:read"])))]
pub(crate) async fn list_bindings(
    State(s): State<AppState>,
    p: Principal,
    addr: Addr,
    Q(q): Q<PageQuery>,
) -> Result<Sorted<Page<rampart_core::access::bindings::BindingView>>, Error> {
    let user_id = match p {
        Principal::User(u) => {
            return crate::v1::bindings::list_bindings(State(s), User(u), Q(q)).await;
        }
        Principal::OAuth(o) if o.scopes.read => {
            audit_grant_use(&s, &o, format!("user:{}", o.user_id), Scopes::READ, &addr).await;
            o.user_id
        }
        Principal::OAuth(_) => {
            return Err(Error::new(
                crate::error::ErrorCode::InsufficientScope,
                format!(
                    "this token's scope does not allow this (needs `{}`)",
                    Scopes::READ
                ),
            ))
        }
        Principal::Admin(_) | Principal::Developer(_) => return Err(Error::unauthorized()),
    };
    let (page, limit) = q.resolve()?;
    let (rows, total) = s
        .core
        .list_bindings(&user_id, (page - 1) * limit, limit)
        .await?;
    Ok(page_of(rows, page, limit, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_decode() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("plain").as_deref(), Some("plain"));
        assert_eq!(form_decode("bad%4"), None);
        assert_eq!(form_decode("bad%zz"), None);
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert!(parse_form(&h, b"a=1&b=2", &[]).is_ok());
        assert!(parse_form(&h, b"a=1&a=2", &[]).is_err());
        assert_eq!(parse_form(&h, b"a=1&a=2", &["a"]).unwrap()["a"].len(), 2);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(parse_form(&h, b"a=1", &[]).is_err());
    }

    /// The typed answers write the bytes the `json!` answers they replace wrote.
    #[test]
    fn typed_answers_keep_their_bytes() {
        let approved = Approved {
            code: Some("c".into()),
            redirect_to: "u".into(),
            state: Some(None),
        };
        assert_eq!(
            serde_json::to_string(&approved).unwrap(),
            json!({"redirect_to": "u", "code": "c", "state": Option::<String>::None}).to_string()
        );
        let denied = Approved {
            code: None,
            redirect_to: "u".into(),
            state: None,
        };
        assert_eq!(
            serde_json::to_string(&denied).unwrap(),
            json!({"redirect_to": "u"}).to_string()
        );
        let revoked = GrantRevoked {
            grant_id: "g".into(),
            status: crate::v1::bindings::RevokedStatus::Revoked,
        };
        assert_eq!(
            serde_json::to_string(&revoked).unwrap(),
            json!({"grant_id": "g", "status": "revoked"}).to_string()
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
