//! The signed-request extractor [`FactoryKey`]: a request signed with a factory credential (the
//! access keys' `RAMPART-HMAC-SHA256` scheme, the credential id as `key_id`), checked by
//! `rampart_core::device::factory` before any handler sees it.

use super::enterprise_key::{read_signed, refusal, signed_request};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::Response;
use rampart_core::device::factory::FactorySession;

/// A request signed with a factory credential; its body, read to check the signature, is in
/// `body`. It must be the last extractor of a handler.
pub(crate) struct FactoryKey {
    pub(crate) session: FactorySession,
    pub(crate) body: Bytes,
}

impl FactoryKey {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| crate::Error::new(crate::error::ErrorCode::InvalidJson, e.to_string()))
    }
}

impl FromRequest<AppState> for FactoryKey {
    type Rejection = Response;
    async fn from_request(req: Request, state: &AppState) -> Result<FactoryKey, Response> {
        let (parts, body) = read_signed(req).await?;
        let session = state
            .core
            .authenticate_factory_credential(&signed_request(&parts, &body))
            .await
            .map_err(refusal)?;
        Ok(FactoryKey { session, body })
    }
}
