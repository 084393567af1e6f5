//! Log in with a third-party OpenID Connect provider: `GET /v1/oidc/{provider}/start` sends the
//! user to the provider, `GET /v1/oidc/{provider}/callback` finishes with a Rampart token pair
//! (the same as `POST /v1/login`). The protocol work is `rampart_core::federation::oidc`.
//!
//! The start sets a browser-binding cookie ([`BROWSER_COOKIE`]) whose value's hash is stored with
//! the state; the callback must carry it back, so a callback URL planted in another browser (login
//! CSRF: signing the victim in to the attacker's account) is refused.
//!
//! Never verifies a provider's token itself: that is `rampart_core::federation::oidc`'s.
//! Each handler's `#[utoipa::path]` makes its part of the OpenAPI document.

use crate::extract::{client_ip, Q};
use crate::v1::schemas::TokenPairSchema;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use rampart_core::federation::oidc::OidcError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

impl From<OidcError> for Error {
    fn from(e: OidcError) -> Error {
        match e {
            OidcError::UnknownProvider => Error::not_found("oidc provider"),
            OidcError::Invalid(m) => Error::invalid(m),
            e @ OidcError::RateLimited => {
                Error::new(crate::error::ErrorCode::RateLimited, e.to_string())
            }
            OidcError::Failed(_) => Error::new(
                crate::error::ErrorCode::OidcLoginFailed,
                "the login at the identity provider could not be verified; start again",
            ),
            OidcError::Provider(m) => {
                tracing::warn!(error = %m, "OIDC provider failed");
                Error::new(
                    crate::error::ErrorCode::OidcProviderError,
                    "the identity provider could not be reached or answered badly",
                )
            }
            e @ OidcError::BrowserMismatch => {
                Error::new(crate::error::ErrorCode::OidcStateMismatch, e.to_string())
            }
            OidcError::Internal(e) => e.into(),
        }
    }
}

/// The browser-binding cookie of a login in flight (`__Host-`: https only, this host only,
/// path `/`). `SameSite=Lax`, so the provider's top-level redirect back to us carries it.
pub(crate) const BROWSER_COOKIE: &str = "__Host-rampart_oidc";

fn browser_cookie(value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{BROWSER_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}"
    ))
    .ok()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Start {
    /// the client app
    app_id: String,
}

/// Where to send the user agent to log in at the provider.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"authorize_url": "https://accounts.example.com/authorize?client_id=rampart&state=..."}))]
pub(crate) struct AuthorizeUrl {
    authorize_url: String,
}

crate::errors!(StartErrors: InvalidRequest, RateLimited, OidcProviderError, NotFound, Internal);
crate::errors!(CallbackErrors: InvalidRequest, OidcStateMismatch, OidcLoginFailed, Conflict,
    OidcProviderError, NotFound, Internal);

/// Our callback URL from the request's host (the `Host` header on HTTP/1.1, the `:authority` of
/// the request URI on HTTP/2), for providers without a configured `redirect_uri`.
fn callback_from_host(headers: &HeaderMap, uri: &Uri, provider: &str) -> Result<String, Error> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| {
            Error::invalid("no usable Host header; configure the provider's redirect_uri")
        })?;
    Ok(format!("https://{host}/v1/oidc/{provider}/callback"))
}

/// `GET /v1/oidc/{provider}/start?app_id=...`: a redirect to the provider (or, for
/// `Accept: application/json`, `{"authorize_url"}`).
#[utoipa::path(get, path = "/v1/oidc/{provider}/start", tag = "accounts",
    summary = "Start an OpenID Connect login",
    description = "Redirects to the provider, or answers `{\"authorize_url\"}` for `Accept: \
        application/json`. Both set the browser-binding cookie `__Host-rampart_oidc` (Secure, \
        HttpOnly, SameSite=Lax), which the callback needs.",
    params(Start),
    responses(
        (status = 303, description = "to the provider's authorisation endpoint",
            headers(("Location" = String))),
        (status = 200, description = "with `Accept: application/json`", body = AuthorizeUrl),
        StartErrors))]
pub(crate) async fn start(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    addr: Option<Extension<ClientAddr>>,
    Q(q): Q<Start>,
) -> Result<Response, Error> {
    let default = callback_from_host(&headers, &uri, &provider);
    let ip = client_ip(&addr);
    let started = s
        .core
        .oidc_start(
            &provider,
            &q.app_id,
            default.as_deref().unwrap_or(""),
            ip.as_deref(),
        )
        .await?;
    let url = &started.authorize_url;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut r = if wants_json {
        Json(AuthorizeUrl {
            authorize_url: url.clone(),
        })
        .into_response()
    } else {
        Redirect::to(url).into_response()
    };
    let cookie = browser_cookie(started.browser.expose(), started.max_age_secs)
        .ok_or_else(|| Error::from(rampart_core::Error::Internal("cookie value".into())))?;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

/// What the provider sends back (other parameters are ignored).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Callback {
    /// the provider's authorisation code
    code: Option<String>,
    /// the state of the start
    state: Option<String>,
    /// the provider refused the login
    error: Option<String>,
}

/// `GET /v1/oidc/{provider}/callback`: the token pair of the linked user.
#[utoipa::path(get, path = "/v1/oidc/{provider}/callback", tag = "accounts",
    summary = "Finish an OpenID Connect login", params(Callback),
    responses((status = 200, description = "a token pair, as from POST /v1/login",
        body = TokenPairSchema), CallbackErrors))]
pub(crate) async fn callback(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    addr: Option<Extension<ClientAddr>>,
    Q(q): Q<Callback>,
) -> Result<Response, Error> {
    if let Some(e) = q.error {
        tracing::info!(provider = %provider, error = %e.chars().take(64).collect::<String>(), "OIDC provider refused the login");
        return Err(OidcError::Failed("provider refused".into()).into());
    }
    let pair = s
        .core
        .oidc_callback(
            &provider,
            q.code.as_deref().unwrap_or(""),
            q.state.as_deref().unwrap_or(""),
            crate::oauth::cookie(&headers, BROWSER_COOKIE).as_deref(),
            client_ip(&addr),
        )
        .await?;
    let mut r = Json(pair).into_response();
    if let Some(spent) = browser_cookie("", 0) {
        r.headers_mut().insert(header::SET_COOKIE, spent);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_host_comes_from_host_or_the_http2_authority() {
        let mut h1 = HeaderMap::new();
        h1.insert(
            header::HOST,
            HeaderValue::from_static("api.example.com:8443"),
        );
        let path_only: Uri = "/v1/oidc/g/start".parse().unwrap();
        assert_eq!(
            callback_from_host(&h1, &path_only, "g").unwrap(),
            "https://api.example.com:8443/v1/oidc/g/callback"
        );
        // HTTP/2: no Host header, the authority is in the request URI.
        let h2: Uri = "https://api.example.com/v1/oidc/g/start".parse().unwrap();
        assert_eq!(
            callback_from_host(&HeaderMap::new(), &h2, "g").unwrap(),
            "https://api.example.com/v1/oidc/g/callback"
        );
        assert!(callback_from_host(&HeaderMap::new(), &path_only, "g").is_err());
        let mut bad = HeaderMap::new();
        bad.insert(header::HOST, HeaderValue::from_static("evil.com/x?"));
        assert!(callback_from_host(&bad, &path_only, "g").is_err());
    }
}
