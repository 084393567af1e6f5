//! Trust across organisations: Rampart as an OAuth2 authorisation server for third-party
//! platforms (`oauth`), and login through outside OpenID Connect providers (`oidc`).

pub mod oauth;
pub mod oidc;
