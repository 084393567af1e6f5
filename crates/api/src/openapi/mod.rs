//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`, and its interactive
//! reader at `GET /docs` (Swagger UI, its assets compiled into the binary).
//!
//! The document is generated from the routes themselves: every route is added through
//! [`ApiRouter`], which has no way to add a route without its description: its handler's
//! `#[utoipa::path]`, whose request and answer types carry `ToSchema`. Error answers come
//! from [`ErrorCode`](crate::error::ErrorCode): an operation names its codes, the code gives the
//! status and the meaning. The rules every operation shares (the rate limits, the headers of a
//! signed request) are applied once, here, from the same constants the middleware uses.
//!
//! This module only describes; it must never decide anything a handler does.

mod docs;
pub(crate) mod errors;

pub(crate) use docs::{DocsPage, DOCS_CSP};

use crate::error::ErrorCode;
use crate::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// A router whose every route is described in the OpenAPI document.
pub(crate) struct ApiRouter {
    inner: OpenApiRouter<AppState>,
}

impl ApiRouter {
    pub(crate) fn new() -> ApiRouter {
        ApiRouter {
            inner: OpenApiRouter::default(),
        }
    }

    /// Routes described by their handlers' `#[utoipa::path]` (made with `utoipa_axum::routes!`).
    pub(crate) fn routes(mut self, routes: UtoipaMethodRouter<AppState>) -> ApiRouter {
        self.inner = self.inner.routes(routes);
        self
    }

    pub(crate) fn merge(mut self, other: ApiRouter) -> ApiRouter {
        self.inner = self.inner.merge(other.inner);
        self
    }

    /// The router, with `GET /openapi.json` and `GET /docs` added, and the document.
    pub(crate) fn finish(self) -> (Router<AppState>, Arc<Value>) {
        let cell: Arc<OnceLock<(Arc<Value>, String)>> = Arc::new(OnceLock::new());
        let served = cell.clone();
        // The description is `openapi_json`'s; the route is this closure, which serves the
        // document built below.
        let (schemas, paths, _): UtoipaMethodRouter<AppState> = utoipa_axum::routes!(openapi_json);
        let serve = get(move || {
            let served = served.clone();
            async move {
                let body = served
                    .get()
                    .map(|(_, text)| text.clone())
                    .unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
        });
        let me = self
            .routes((schemas, paths, serve))
            .routes(utoipa_axum::routes!(docs::docs_root))
            .routes(utoipa_axum::routes!(docs::docs_file));
        let (router, derived) = me.inner.split_for_parts();
        let doc = Arc::new(document(&derived));
        let _ = cell.set((doc.clone(), doc.to_string()));
        (router, doc)
    }
}

/// The description of `GET /openapi.json`, served by [`ApiRouter::finish`]'s route.
#[utoipa::path(get, path = "/openapi.json", tag = "service", summary = "This OpenAPI document",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() {}

/// The document: the derived paths and schemas, with the shared rules applied to every operation.
fn document(derived: &utoipa::openapi::OpenApi) -> Value {
    let derived = serde_json::to_value(derived).expect("the derived document is JSON");
    let mut paths: Map<String, Value> = derived["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().into_iter().flatten() {
            shared_rules(path, method, op);
        }
    }
    let schemas = derived["components"]["schemas"].clone();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Rampart HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Errors are `{\"error\": {\"code\", \"message\"}}` (except `/oauth/token` and `/oauth/revoke`: RFC 6749, and the HTML pages of `/oauth/authorize`). Any path answers 404 `NOT_FOUND` when unknown and 405 `METHOD_NOT_ALLOWED` for a method it does not serve. See docs/api.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": [
            {"name": "service"}, {"name": "products"}, {"name": "devices"},
            {"name": "accounts", "description": "end users"}, {"name": "bindings"},
            {"name": "oauth", "description": "the OAuth2 authorisation server"},
            {"name": "developers"}, {"name": "enterprises"},
            {"name": "enterprise api", "description": "signed requests with an enterprise access key"},
            {"name": "operator", "description": "the operator's account administration"},
            {"name": "ota", "description": "firmware, signing keys and update campaigns"},
            {"name": "device-ota", "description": "the update check, reports and downloads of devices that use HTTPS"}
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": security_schemes(),
        }
    })
}

/// The rules every derived operation shares, applied from the constants the router uses: its
/// path parameters, its id, the per-IP rate limit of every path but the exempt ones, and the
/// rate-limit headers of a signed request's success.
fn shared_rules(path: &str, method: &str, op: &mut Value) {
    op["operationId"] = json!(operation_id(method, path));
    let mut declared: Vec<Value> = op["parameters"].as_array().cloned().unwrap_or_default();
    // A path parameter read with `Path<String>` is declared without words: give it the path's.
    for d in declared.iter_mut().filter(|d| d["in"] == "path") {
        if d.get("description").is_none() {
            let name = d["name"].as_str().unwrap_or_default();
            d["description"] = json!(path_param_meaning(name));
        }
    }
    let mut params: Vec<Value> = path_params(path)
        .into_iter()
        .filter(|p| {
            !declared
                .iter()
                .any(|d| d["in"] == "path" && d["name"] == *p)
        })
        .map(|p| {
            json!({"name": p, "in": "path", "required": true,
                "description": path_param_meaning(p), "schema": {"type": "string"}})
        })
        .collect();
    params.extend(declared);
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if !crate::server::limits::EXEMPT.contains(&path) {
        let mut codes = errors::codes_of(&op["responses"]["429"]);
        if !codes.contains(&ErrorCode::RateLimited) {
            codes.push(ErrorCode::RateLimited);
            op["responses"]["429"] = errors::response(&codes.into_iter().collect());
        }
    }
    let signed = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("access_key").is_some()));
    if signed {
        for (status, r) in op["responses"].as_object_mut().into_iter().flatten() {
            if status.starts_with('2') {
                r["headers"] = errors::rate_headers(false);
            }
        }
    }
}

/// The accepted credentials, by the names operations use in `security`.
fn security_schemes() -> Value {
    json!({
        "admin": {"type": "http", "scheme": "bearer",
            "description": "the operator's bootstrap admin token"},
        "user": {"type": "http", "scheme": "bearer", "bearerFormat": "rat_",
            "description": "an end user's access token from POST /v1/login"},
        "developer": {"type": "http", "scheme": "bearer", "bearerFormat": "rdt_",
            "description": "a developer's access token from POST /v1/developers/login"},
        "oauth": {"type": "oauth2",
            "description": "a third party's `roa_` access token, within its scopes",
            "flows": {"authorizationCode": {
                "authorizationUrl": "/oauth/authorize", "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": {"devices:read": "see the user's devices, their state and history",
                    "devices:control": "send commands to the devices the user may control",
                    "devices:admin": "the destructive commands (`factory_reset`, `wipe`) on the devices the user owns"}}}},
        "user_query": {"type": "apiKey", "in": "query", "name": "access_token",
            "description": "a token in the query (WebSockets only, which a browser cannot give a header: an end user's on /v1/ws, a developer's on /v1/developers/ws, an admin token on /v1/admin/events)"},
        "client_basic": {"type": "http", "scheme": "basic",
            "description": "OAuth2 client id and secret (or `client_id`/`client_secret` form fields)"},
        "factory_credential": {"type": "apiKey", "in": "header", "name": "Authorization",
            "description": "a factory credential's signed request: the access keys' `RAMPART-HMAC-SHA256` scheme with the credential id as `key_id` and its secret as the HMAC key; see docs/api.md, Factory credentials"},
        "device": {"type": "http", "scheme": "basic",
            "description": "a device: its CONNECT user name `did|hmac-sha256|ts` and password (docs/ota.md)"},
        "access_key": {"type": "apiKey", "in": "header", "name": "Authorization",
            "description": "an enterprise access key's signed request: `Authorization: RAMPART-HMAC-SHA256 key_id=..., ts=..., nonce=..., signature=...`, an HMAC-SHA256 of the request with the key's secret; see docs/enterprise-api.md"}
    })
}

/// The `{name}` segments of a path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn path_param_meaning(name: &str) -> &'static str {
    match name {
        "did" => "device id (a malformed one answers 404 like an unknown one)",
        "product_key" => "product key (a malformed one answers 404 like an unknown one)",
        "share_id" => "share id",
        "grant_id" => "grant id",
        "client_id" => "OAuth2 client id (`rcl_...`)",
        "provider" => "OpenID Connect provider name, as configured",
        "id" => "enterprise or developer id",
        "developer_id" => "developer id",
        "invite_id" => "invitation id",
        "key_id" => "access key id (`rak_...`)",
        "webhook_id" => "webhook id (`rwh_...`)",
        "letter_id" => "dead letter id",
        "command_id" => "command id, as the command's answer gave it",
        "ca_id" => "CA certificate id (`ca_...`)",
        "credential_id" => "factory credential id (`rfc_...`)",
        "batch_id" => "factory batch id",
        "firmware_id" => "firmware id (`fw_...`)",
        "campaign_id" => "campaign id (`cmp_...`)",
        _ => "",
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .filter(|c| *c != '_' || !seg.starts_with('{')),
        );
    }
    let id = id.replace("__", "_").trim_end_matches('_').to_owned();
    // `/console/` is a page of its own beside `/console`.
    if path.len() > 1 && path.ends_with('/') {
        id + "_index"
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    async fn test_router() -> (Router, Arc<Value>, tempfile::TempDir) {
        let (state, dir) = crate::test_state().await;
        let (_, doc) = crate::api().finish();
        (crate::router(state), doc, dir)
    }

    /// Every operation of the document, as (path, method, operation).
    fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.as_str(), method.as_str(), op));
            }
        }
        out
    }

    async fn call(router: &Router, method: Method, uri: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The router serves exactly the documented operations. Every route is added through
    /// [`ApiRouter`], which cannot add one without its description, so the router's paths are
    /// the document's; asking the router each method on each path then shows the methods match
    /// both ways: a documented one is routed (neither 405 nor the fallback's 404), any other
    /// answers 405.
    #[tokio::test]
    async fn the_router_serves_exactly_the_documented_operations() {
        let (router, doc, _dir) = test_router().await;
        let ops = operations(&doc);
        assert!(ops.len() > 100, "{}", ops.len());
        let documented: BTreeSet<(String, String)> = ops
            .iter()
            .map(|(p, m, _)| (p.to_string(), m.to_uppercase()))
            .collect();
        let paths: BTreeSet<&str> = ops.iter().map(|(p, _, _)| *p).collect();
        for path in paths {
            let uri: Vec<&str> = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x1" } else { s })
                .collect();
            let uri = uri.join("/");
            for m in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ] {
                let (status, body) = call(&router, m.clone(), &uri).await;
                if documented.contains(&(path.to_owned(), m.to_string())) {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                    assert_ne!(
                        body["error"]["message"], "route not found",
                        "{m} {path} is documented but not routed"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{m} {path} is served but not documented: {body}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn every_operation_documents_its_answers_and_parameters() {
        let (_, doc, _dir) = test_router().await;
        let cannot_fail = ["/healthz", "/openapi.json", "/docs", "/readyz"];
        for (path, method, op) in operations(&doc) {
            let at = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            if !cannot_fail.contains(&path) {
                assert!(responses.keys().any(|s| s.starts_with('4')), "{at}: no 4xx");
            }
            assert!(
                responses.keys().any(|s| matches!(&s[..1], "1" | "2" | "3")),
                "{at}: no success"
            );
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{at} {status}"
                );
            }
            let security = op["security"].as_array().cloned().unwrap_or_default();
            let only_client = security.iter().all(|s| s.get("client_basic").is_some());
            if !security.is_empty() && !only_client {
                assert!(responses.contains_key("401"), "{at}: no 401");
            }
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert!(
                        p["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{at}: {p}"
                    );
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(names, path_params(path), "{at}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}"
            );
            assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{at}");
        }
    }

    #[tokio::test]
    async fn the_document_is_openapi_3_1_with_resolvable_references() {
        let (_, doc, _dir) = test_router().await;
        // Each schema on its own first, so a failure names the schema.
        let mut schemas_at: Vec<(String, Value)> = Vec::new();
        collect(
            "",
            &doc,
            &|k, at| k == "schema" || at == "/components/schemas",
            &mut schemas_at,
        );
        for (at, schema) in schemas_at {
            let parsed: Result<utoipa::openapi::RefOr<utoipa::openapi::Schema>, _> =
                serde_json::from_value(schema.clone());
            if let Err(e) = parsed {
                panic!("{at}: {schema} -> {e}");
            }
        }
        let parsed: utoipa::openapi::OpenApi = serde_json::from_value((*doc).clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed.openapi).unwrap(),
            json!("3.1.0")
        );
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let mut ids = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operation id {id} twice");
            for req in op["security"].as_array().into_iter().flatten() {
                let name = req.as_object().unwrap().keys().next().unwrap();
                assert!(schemes.contains_key(name), "{method} {path}: {name}");
            }
        }
    }

    /// The codes the document lists are [`ErrorCode`]s with their own status, and every
    /// `ErrorCode` an HTTP answer can carry is documented on some operation.
    #[tokio::test]
    async fn the_documented_codes_are_the_error_codes() {
        let (_, doc, _dir) = test_router().await;
        let mut documented = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            for (status, r) in op["responses"].as_object().unwrap() {
                let listed = r["content"]["application/json"]["schema"]["properties"]["error"]
                    ["properties"]["code"]["enum"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for name in listed {
                    let name = name.as_str().unwrap();
                    let code = ErrorCode::parse(name)
                        .unwrap_or_else(|| panic!("{method} {path}: {name} is no ErrorCode"));
                    assert_eq!(code.status().as_str(), status, "{method} {path} {name}");
                    documented.insert(code);
                }
            }
        }
        // Answered on any path (`info.description` says so once); never built by any path
        // today; answered inside the event stream's messages only.
        let elsewhere = [
            ErrorCode::MethodNotAllowed,
            ErrorCode::DeviceError,
            ErrorCode::TooManyCommands,
        ];
        for c in ErrorCode::ALL {
            assert!(
                documented.contains(c) != elsewhere.contains(c),
                "{c}: documented {}, listed as answered elsewhere {}",
                documented.contains(c),
                elsewhere.contains(c)
            );
        }
    }

    /// Every example in the document is valid against the schema beside it.
    #[tokio::test]
    async fn every_example_validates_against_its_schema() {
        let (_, doc, _dir) = test_router().await;
        let mut holders: Vec<(String, Value)> = Vec::new();
        collect("", &doc, &|_, _| true, &mut holders);
        let mut checked = 0;
        for (at, holder) in holders {
            let Some(example) = holder.get("example") else {
                continue;
            };
            // A media type's example sits beside its `schema`; a schema's inside it.
            let schema = match holder.get("schema") {
                Some(s) => s.clone(),
                None if at.starts_with("/components/schemas") || at.contains("/schema") => {
                    holder.clone()
                }
                None => continue,
            };
            let mut root = schema.clone();
            if let Some(o) = root.as_object_mut() {
                o.insert("components".into(), doc["components"].clone());
            } else {
                continue;
            }
            let validator = jsonschema::draft202012::new(&root)
                .unwrap_or_else(|e| panic!("{at}: the schema does not compile: {e}"));
            if let Err(e) = validator.validate(example) {
                panic!("{at}: the example {example} is not valid: {e}");
            }
            checked += 1;
        }
        assert!(checked > 100, "only {checked} examples checked");
    }

    /// Every value of `v` that `pick(key, where)` selects, with where it is.
    fn collect(
        at: &str,
        v: &Value,
        pick: &dyn Fn(&str, &str) -> bool,
        out: &mut Vec<(String, Value)>,
    ) {
        if let Value::Object(m) = v {
            for (k, x) in m {
                let here = format!("{at}/{k}");
                if pick(k, at) && x.is_object() {
                    out.push((here.clone(), x.clone()));
                }
                collect(&here, x, pick, out);
            }
        }
    }

    #[test]
    fn error_answers_survive_utoipa_s_model() {
        let codes = [
            ErrorCode::RateLimited,
            ErrorCode::NotFound,
            ErrorCode::Forbidden,
        ];
        for (status, r) in errors::responses(&codes) {
            let want = errors::response(&errors::by_status(&codes)[&status.parse().unwrap()]);
            assert_eq!(serde_json::to_value(&r).unwrap(), want, "{status}");
        }
    }

    #[tokio::test]
    async fn openapi_json_is_served_without_credentials() {
        let (router, doc, _dir) = test_router().await;
        let (status, v) = call(&router, Method::GET, "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(v, *doc);
        assert!(v["paths"]["/v1/bindings"]["get"]["responses"]["401"].is_object());
    }

    /// `/docs` serves Swagger UI from the binary with a CSP that lets its scripts run, and only
    /// its files get that CSP.
    #[tokio::test]
    async fn docs_are_served_from_the_binary_with_their_own_csp() {
        let (router, _, _dir) = test_router().await;
        let get = |uri: &str| {
            Request::builder()
                .uri(uri.to_owned())
                .body(Body::empty())
                .unwrap()
        };
        let resp = router.clone().oneshot(get("/docs")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/docs/index.html");
        let resp = router
            .clone()
            .oneshot(get("/docs/index.html"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], DOCS_CSP);
        let resp = router
            .clone()
            .oneshot(get("/docs/swagger-initializer.js"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("/openapi.json"), "{text}");
        assert!(
            !text.contains("https://"),
            "no asset from elsewhere: {text}"
        );
        let (status, body) = call(&router, Method::GET, "/docs/nothing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        for uri in ["/healthz", "/docs/nothing.js", "/openapi.json"] {
            let resp = router.clone().oneshot(get(uri)).await.unwrap();
            assert_eq!(
                resp.headers()[header::CONTENT_SECURITY_POLICY],
                crate::CSP,
                "{uri}"
            );
        }
    }
}
