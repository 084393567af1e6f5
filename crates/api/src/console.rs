//! `GET /console/`: the web console, plain ES modules and one stylesheet compiled into the binary
//! (`crates/api/console/`); no build step, no CDN. The console is a client of the public API like
//! any other: it signs in with the public login routes and calls the documented operations
//! (`console/api.js` is generated from `/openapi.json`; a test keeps it current).
//!
//! Its answers carry their own Content-Security-Policy ([`CONSOLE_CSP`]: scripts, styles and
//! connections to this origin only, never inline script) and are cached by validation: each file
//! has an `ETag` computed at compile time and `Cache-Control: no-cache`, so a browser asks again
//! and gets a 304 until the binary changes. Never serves anything but these files.

use crate::error::{Error, ErrorCode};
use crate::openapi::ApiRouter;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::routes;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(console_root))
        .routes(routes!(console_index))
        .routes(routes!(console_file))
}

/// The Content-Security-Policy of the console's files: everything from this origin, no inline
/// script or style, no framing, no form posting anywhere (forms are sent by the scripts).
pub(crate) const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'none'";

/// What the console's answers are revalidated with (see the module's comment).
pub(crate) const CONSOLE_CACHE: &str = "no-cache";

/// Marks an answer as a console file, for the router's CSP and cache layers.
#[derive(Clone, Copy)]
pub(crate) struct ConsolePage;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

/// FNV-1a (64 bits) of a file's bytes: an ETag only has to change when the file does.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// The quoted lowercase hex of `h`, as an `ETag` value (18 bytes: two quotes, 16 digits).
const fn etag_of(h: u64) -> [u8; 18] {
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = digits[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $ct:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name));
        const TAG: [u8; 18] = etag_of(fnv1a(BODY));
        Asset {
            name: $name,
            content_type: $ct,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("api.js", JS),
    asset!("app.js", JS),
    asset!("ui.js", JS),
    asset!("chart.js", JS),
    asset!("live.js", JS),
    asset!("pages.js", JS),
    asset!("model.js", JS),
    asset!("ota.js", JS),
];

crate::errors!(ConsoleErrors: NotFound);

/// The console without its trailing slash.
#[utoipa::path(get, path = "/console", tag = "service", summary = "The web console",
    description = "Redirects to `/console/`.",
    responses((status = 308, description = "to `/console/`",
        headers(("Location" = String, description = "the console's page")))))]
async fn console_root() -> Redirect {
    Redirect::permanent("/console/")
}

/// The console's page.
#[utoipa::path(get, path = "/console/", tag = "service", summary = "The web console's page",
    description = "Served from the binary; revalidated with `If-None-Match` (304 while unchanged).",
    params(("If-None-Match" = Option<String>, Header, description = "an `ETag` this file was served with")),
    responses((status = 200, description = "the page", content_type = "text/html", body = String,
        headers(("ETag" = String, description = "the file's version"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag")))]
async fn console_index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// A file of the console.
#[utoipa::path(get, path = "/console/{file}", tag = "service", summary = "A file of the web console",
    params(("file" = String, Path, description = "a file of the console, e.g. `app.js`"),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` this file was served with")),
    responses((status = 200, description = "the file", content(
        (String = "text/html"), (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml")),
        headers(("ETag" = String, description = "the file's version"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        ConsoleErrors))]
async fn console_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return Error::new(ErrorCode::NotFound, "file not found").into_response();
    };
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == a.etag
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = a.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CONSOLE_CACHE),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp.extensions_mut().insert(ConsolePage);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: &axum::Router, uri: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// The page and its files come from the binary with the console's CSP (no inline script,
    /// nothing from another origin) and revalidation headers; an unchanged file answers 304.
    #[tokio::test]
    async fn the_console_is_served_from_the_binary_with_a_strict_csp() {
        let (state, _dir) = crate::test_state().await;
        let router = crate::router(state);
        let resp = get(&router, "/console", None).await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()[header::LOCATION], "/console/");

        let resp = get(&router, "/console/", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(csp, CONSOLE_CSP);
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], CONSOLE_CACHE);
        let etag = resp.headers()[header::ETAG].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = std::str::from_utf8(&body).unwrap();
        assert!(
            html.contains(r#"<script type="module" src="app.js">"#),
            "{html}"
        );

        let again = get(&router, "/console/", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());

        for a in ASSETS {
            let resp = get(&router, &format!("/console/{}", a.name), None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CONSOLE_CSP);
        }
        let missing = get(&router, "/console/nope.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        // Every other answer keeps the API's CSP and `no-store`.
        let api = get(&router, "/healthz", None).await;
        assert_eq!(api.headers()[header::CONTENT_SECURITY_POLICY], crate::CSP);
        assert_eq!(api.headers()[header::CACHE_CONTROL], "no-store");
    }

    /// No file of the console holds inline script, an inline style, an event-handler attribute
    /// or an address of another origin: what the CSP would refuse is not shipped at all.
    #[test]
    fn no_file_needs_more_than_the_csp_allows() {
        for a in ASSETS {
            // The SVG namespace is a name, not an address anything is fetched from.
            let text = std::str::from_utf8(a.body)
                .unwrap()
                .replace("http://www.w3.org/2000/svg", "");
            for bad in [
                "http://",
                "https://",
                "javascript:",
                "eval(",
                "new Function",
                "innerHTML",
            ] {
                assert!(!text.contains(bad), "{} contains {bad}", a.name);
            }
        }
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<style") && !html.contains(" style="));
        for handler in ["onclick=", "onload=", "onsubmit=", "onerror=", "oninput="] {
            assert!(!html.contains(handler), "{handler}");
        }
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        assert!(scripts.iter().all(|s| s.contains("src=")), "inline script");
    }

    /// The ETags are the files' versions: distinct files, distinct tags.
    #[test]
    fn etags_differ_with_the_content() {
        assert_ne!(etag_of(fnv1a(b"a")), etag_of(fnv1a(b"b")));
        let tags: std::collections::BTreeSet<&str> = ASSETS.iter().map(|a| a.etag).collect();
        assert_eq!(tags.len(), ASSETS.len());
    }
}

/// The console's API client module (`console/api.js`): every operation of the document by its
/// `operationId`, with its method, path, query parameters, whether it takes a JSON body and
/// who may call it. The console calls operations only through it, so a route that changes or
/// goes away fails this module's test rather than a page in a browser.
#[cfg(test)]
pub(crate) fn client_module(doc: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut ops = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let names = |place: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == place)
                    .filter_map(|p| p["name"].as_str().map(|n| format!("{n:?}")))
                    .collect()
            };
            let security: Vec<String> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object().and_then(|o| o.keys().next().cloned()))
                .map(|s| format!("{s:?}"))
                .collect();
            let body = op["requestBody"]["content"]
                .as_object()
                .map(|c| {
                    c.keys()
                        .next()
                        .map_or("null".to_owned(), |k| format!("{k:?}"))
                })
                .unwrap_or_else(|| "null".to_owned());
            let summary = op["summary"]
                .as_str()
                .unwrap_or_default()
                .replace("*/", "* /");
            let mut line = String::new();
            let _ = write!(
                line,
                "  /** {summary} */\n  {id}: {{ method: {:?}, path: {path:?}, pathParams: [{}], query: [{}], body: {body}, security: [{}] }},\n",
                method.to_uppercase(),
                names("path").join(", "),
                names("query").join(", "),
                security.join(", "),
            );
            ops.insert(id.to_owned(), line);
        }
    }
    let mut out = String::from(
        "// Generated from /openapi.json by `client_module` in crates/api/src/console.rs; do not edit.\n\
         // Regenerate: RAMPART_REGENERATE_CONSOLE_CLIENT=1 cargo test -p rampart-api console_client\n\
         // Every operation by operationId: method, path, path and query parameter names, the\n\
         // request body's media type (null: none), the credentials it accepts.\n\
         export const operations = Object.freeze({\n",
    );
    for line in ops.values() {
        out.push_str(line);
    }
    out.push_str("});\n");
    out
}

#[cfg(test)]
mod client_tests {
    /// Every operation the pages call by name is one of the document's: a console that calls a
    /// route that does not exist fails here, not in a browser.
    #[test]
    fn the_pages_call_only_documented_operations() {
        let (_, doc) = crate::api().finish();
        let ids: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let mut called = 0;
        for a in super::ASSETS
            .iter()
            .filter(|a| a.name.ends_with(".js") && a.name != "api.js")
        {
            let text = std::str::from_utf8(a.body).unwrap();
            for quoted in text.split('"').skip(1).step_by(2) {
                let is_op = ["get_v1_", "post_v1_", "put_v1_", "delete_v1_", "patch_v1_"]
                    .iter()
                    .any(|p| quoted.starts_with(p));
                if is_op {
                    assert!(
                        ids.contains(quoted),
                        "{} calls {quoted}, which /openapi.json does not have",
                        a.name
                    );
                    called += 1;
                }
            }
        }
        assert!(called > 30, "{called}");
    }

    /// `console/api.js` is what the document generates now; with
    /// `RAMPART_REGENERATE_CONSOLE_CLIENT=1` it is rewritten instead.
    #[test]
    fn console_client_is_generated_from_the_current_document() {
        let (_, doc) = crate::api().finish();
        let want = super::client_module(&doc);
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console/api.js");
        if std::env::var_os("RAMPART_REGENERATE_CONSOLE_CLIENT").is_some() {
            std::fs::write(&file, &want).unwrap();
        }
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "console/api.js is out of date with /openapi.json: run \
             RAMPART_REGENERATE_CONSOLE_CLIENT=1 cargo test -p rampart-api console_client"
        );
    }
}
