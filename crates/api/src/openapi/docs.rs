//! `GET /docs`: Swagger UI reading `/openapi.json`, its files compiled into the binary (no CDN).
//!
//! Its pages run the Swagger UI scripts, so they carry their own Content-Security-Policy (scripts,
//! styles, images and fetches from this origin only); every other answer keeps the strict one.
//! Never serves anything but the Swagger UI files.

use crate::error::{Error, ErrorCode};
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::{Arc, OnceLock};

/// The Content-Security-Policy of the Swagger UI files: what its scripts need, from this origin.
pub(crate) const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Marks an answer as a Swagger UI file, for the router's CSP layer.
#[derive(Clone, Copy)]
pub(crate) struct DocsPage;

crate::errors!(DocsErrors: NotFound, Internal);

/// Where the Swagger UI starts.
#[utoipa::path(get, path = "/docs", tag = "service", summary = "Interactive API documentation",
    description = "Redirects to the Swagger UI page, which reads `/openapi.json`.",
    responses((status = 303, description = "to `/docs/index.html`",
        headers(("Location" = String, description = "the Swagger UI page")))))]
pub(crate) async fn docs_root() -> Redirect {
    Redirect::to("/docs/index.html")
}

/// A Swagger UI file.
#[utoipa::path(get, path = "/docs/{file}", tag = "service", summary = "A file of the interactive API documentation",
    params(("file" = String, Path, description = "a file of Swagger UI, e.g. `index.html`")),
    responses((status = 200, description = "the file", content(
        (String = "text/html"), (String = "text/javascript"), (String = "text/css"), (String = "image/png"))),
        DocsErrors))]
pub(crate) async fn docs_file(Path(file): Path<String>) -> Response {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));
    match utoipa_swagger_ui::serve(&file, config.clone()) {
        Ok(Some(f)) => {
            let mut resp = f.bytes.into_owned().into_response();
            if let Ok(ct) = HeaderValue::from_str(&f.content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp.extensions_mut().insert(DocsPage);
            resp
        }
        Ok(None) => Error::new(ErrorCode::NotFound, "file not found").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Swagger UI file");
            Error::new(ErrorCode::Internal, "internal error").into_response()
        }
    }
}
