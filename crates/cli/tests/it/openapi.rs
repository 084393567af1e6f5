//! The OpenAPI document (issue 4): `GET /openapi.json` from the real binary, and the 401 every
//! token-protected operation documents is the 401 the server really answers.

use crate::support::*;
use serde_json::Value;

async fn document(srv: &Server) -> Value {
    let resp = srv
        .http_client
        .get(srv.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn openapi_json_describes_the_api() {
    let srv = Server::start().await;
    let doc = document(&srv).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let get = &doc["paths"]["/v1/bindings"]["get"];
    let e401 = &get["responses"]["401"]["content"]["application/json"]["schema"];
    assert_eq!(
        e401["properties"]["error"]["properties"]["code"]["enum"],
        serde_json::json!(["UNAUTHORIZED"])
    );
    assert!(get["security"].as_array().unwrap().len() >= 2);
    for path in [
        "/healthz",
        "/metrics",
        "/v1/ws",
        "/oauth/token",
        "/v1/devices/{did}/commands",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let token = &doc["paths"]["/oauth/token"]["post"]["responses"];
    assert!(
        token["401"]["content"]["application/json"]["schema"]["properties"]["error_description"]
            .is_object()
    );
}

#[tokio::test]
async fn every_protected_operation_answers_its_documented_401() {
    let srv = Server::start().await;
    let doc = document(&srv).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            if security.iter().any(|s| s.get("client_basic").is_some()) {
                continue; // RFC 6749 endpoints: checked in oauth.rs
            }
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = srv
                .call(&method.to_uppercase(), &concrete, None, None)
                .await;
            assert_eq!(status, 401, "{method} {path}: {body}");
            let codes = &op["responses"]["401"]["content"]["application/json"]["schema"]
                ["properties"]["error"]["properties"]["code"]["enum"];
            assert!(
                codes.as_array().unwrap().contains(&body["error"]["code"]),
                "{method} {path}: {body} not in {codes}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations checked");
}
