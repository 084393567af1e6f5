//! Request extractors: who is calling ([`auth`]: the admin token, end users, any principal,
//! the app id header; [`developer`]: developers and managers; [`enterprise_key`]: signed
//! enterprise requests) and how the body and query are read ([`Body`], [`Q`]), each rejection
//! answered as an `api::Error`.
//!
//! Extractors only establish identity and parse input; they must never decide what the caller
//! may do to a resource (that is `rampart_core::access::tenancy`'s and the handlers' call into it).

pub(crate) mod auth;
pub(crate) mod developer;
pub(crate) mod enterprise_key;

pub(crate) use auth::{bearer, Admin, AppId, Principal, User};
pub(crate) use developer::{Developer, Manager};
pub(crate) use enterprise_key::EnterpriseKey;

use crate::{ClientAddr, Error};
use axum::extract::{FromRequest, FromRequestParts};
use axum::Extension;

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
