//! Authentication extractors: [`Admin`] (the bootstrap admin token), [`User`] (an end user's access
//! token) and [`Principal`] (either), plus the `X-Rampart-App-Id` header.
//!
//! Identity only: what the caller may do to a device or account is never decided here.

use crate::{AppState, Error};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use rampart_core::federation::oauth::OAuthSession;
use rampart_core::identity::accounts::UserSession;

/// The bearer token of a request, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Count a call of a signed-in end user against `limits.user` (their own tokens and third-party
/// tokens acting for them share it).
fn count_user(state: &AppState, user_id: &str) -> Result<(), Error> {
    state
        .core
        .limits()
        .check_user(user_id, state.core.now_ms())?;
    Ok(())
}

/// Proof that the request carries an admin token (the bootstrap one or a named one), with the
/// actor the audit log names for it.
pub(crate) struct Admin(pub(crate) rampart_core::audit::Actor);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Error> {
        let token = bearer(parts).ok_or_else(Error::unauthorized)?;
        match state.core.admin_token_actor(token).await? {
            Some(actor) => Ok(Admin(actor)),
            None => Err(Error::unauthorized()),
        }
    }
}

/// An end user signed in with an access token.
pub(crate) struct User(pub(crate) UserSession);

impl FromRequestParts<AppState> for User {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<User, Error> {
        let token = bearer(parts).ok_or_else(Error::unauthorized)?;
        let u = state.core.authenticate_user(token).await?;
        count_user(state, &u.user_id)?;
        Ok(User(u))
    }
}

/// The administrator, an end user, a developer, or a third party acting for a user within its
/// scopes (`roa_` tokens, see `crate::oauth`): device endpoints accept all four.
pub(crate) enum Principal {
    Admin(rampart_core::audit::Actor),
    User(UserSession),
    OAuth(OAuthSession),
    Developer(rampart_core::identity::developers::DeveloperSession),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Principal, Error> {
        let token = bearer(parts).ok_or_else(Error::unauthorized)?;
        if token.starts_with("rat_") {
            if let Ok(u) = state.core.authenticate_user(token).await {
                count_user(state, &u.user_id)?;
                return Ok(Principal::User(u));
            }
        }
        if token.starts_with(rampart_core::federation::oauth::ACCESS_PREFIX) {
            if let Ok(o) = state.core.authenticate_oauth(token).await {
                count_user(state, &o.user_id)?;
                return Ok(Principal::OAuth(o));
            }
        }
        if token.starts_with(rampart_core::identity::developers::ACCESS_PREFIX) {
            return Ok(Principal::Developer(
                state.core.authenticate_developer(token).await?,
            ));
        }
        match state.core.admin_token_actor(token).await? {
            Some(actor) => Ok(Principal::Admin(actor)),
            None => Err(Error::unauthorized()),
        }
    }
}

/// The `X-Rampart-App-Id` header (empty when absent; the core refuses unknown apps).
pub(crate) struct AppId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for AppId {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<AppId, Error> {
        Ok(AppId(
            parts
                .headers
                .get("x-rampart-app-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim()
                .to_owned(),
        ))
    }
}
