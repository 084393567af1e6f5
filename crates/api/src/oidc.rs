//! Log in with a third-party OpenID Connect provider: `GET /v1/oidc/{provider}/start` sends the
//! user to the provider, `GET /v1/oidc/{provider}/callback` finishes with a Rampart token pair
//! (the same as `POST /v1/login`). The protocol work is `rampart_core::oidc`.

use crate::routes::{client_ip, Q};
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use rampart_core::oidc::OidcError;
use serde::Deserialize;
use serde_json::json;

impl From<OidcError> for Error {
    fn from(e: OidcError) -> Error {
        match e {
            OidcError::UnknownProvider => Error::not_found("oidc provider"),
            OidcError::Invalid(m) => Error::invalid(m),
            e @ OidcError::RateLimited => {
                Error::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", e.to_string())
            }
            OidcError::Failed(_) => Error::new(
                StatusCode::UNAUTHORIZED,
                "OIDC_LOGIN_FAILED",
                "the login at the identity provider could not be verified; start again",
            ),
            OidcError::Provider(m) => {
                tracing::warn!(error = %m, "OIDC provider failed");
                Error::new(
                    StatusCode::BAD_GATEWAY,
                    "OIDC_PROVIDER_ERROR",
                    "the identity provider could not be reached or answered badly",
                )
            }
            OidcError::Internal(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Start {
    app_id: String,
}

/// Our callback URL from the request's host, for providers without a configured `redirect_uri`.
fn callback_from_host(headers: &HeaderMap, provider: &str) -> Result<String, Error> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
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
pub(crate) async fn start(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    addr: Option<Extension<ClientAddr>>,
    Q(q): Q<Start>,
) -> Result<Response, Error> {
    let default = callback_from_host(&headers, &provider);
    let ip = client_ip(&addr);
    let url = s
        .core
        .oidc_start(
            &provider,
            &q.app_id,
            default.as_deref().unwrap_or(""),
            ip.as_deref(),
        )
        .await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Ok(Json(json!({"authorize_url": url})).into_response())
    } else {
        Ok(Redirect::to(&url).into_response())
    }
}

/// What the provider sends back (other parameters are ignored).
#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /v1/oidc/{provider}/callback`: the token pair of the linked user.
pub(crate) async fn callback(
    State(s): State<AppState>,
    Path(provider): Path<String>,
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
            client_ip(&addr),
        )
        .await?;
    Ok(Json(pair).into_response())
}
