//! The developer extractors: [`Developer`] (an `rdt_` access token) and [`Manager`] (the
//! operator's admin token or a developer), which product and device handlers turn into a
//! `tenancy::Caller` for `rampart-core` to decide on.
//!
//! Identity only: what a developer or the operator may do is never decided here.

use crate::extract::bearer;
use crate::{AppState, Error};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rampart_core::access::tenancy::Caller;
use rampart_core::identity::developers::{DeveloperSession, ACCESS_PREFIX};

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
    /// An admin token, with its audit actor.
    Operator(rampart_core::audit::Actor),
    Developer(DeveloperSession),
}

impl Manager {
    pub(crate) fn caller(&self) -> Caller {
        match self {
            Manager::Operator(a) => Caller::Operator(a.clone()),
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
        match state.core.admin_token_actor(token).await? {
            Some(actor) => Ok(Manager::Operator(actor)),
            None => Err(Error::unauthorized()),
        }
    }
}
