//! The OpenAPI document: `GET /openapi.json` from the real binary, and the 401 every
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

/// Whether `body` has the shape `schema` documents: types, required properties, and no property
/// the schema does not name (unless it allows others). Enough to catch a schema gone stale.
fn conforms(doc: &Value, schema: &Value, body: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], body, at);
    }
    if let Some(alts) = schema["oneOf"].as_array() {
        return match alts.iter().any(|s| conforms(doc, s, body, at).is_ok()) {
            true => Ok(()),
            false => Err(format!("{at}: {body} matches no alternative")),
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match body {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let type_ok = types.is_empty()
        || types.contains(&actual)
        || (actual == "integer" && types.contains(&"number"));
    if !type_ok {
        return Err(format!("{at}: {body} is {actual}, documented {types:?}"));
    }
    if let Some(c) = schema.get("const") {
        if c != body {
            return Err(format!("{at}: {body} is not {c}"));
        }
    }
    if let (Some(e), Value::String(_)) = (schema["enum"].as_array(), body) {
        if !e.contains(body) {
            return Err(format!("{at}: {body} not in {schema}"));
        }
    }
    if let Value::Object(m) = body {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            if !m.contains_key(req.as_str().unwrap()) {
                return Err(format!("{at}: missing {req} in {body}"));
            }
        }
        for (k, v) in m {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == true => {}
                None if props.is_some() => {
                    return Err(format!("{at}: undocumented property {k} in {body}"))
                }
                None => {}
            }
        }
    }
    if let Value::Array(items) = body {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, &schema["items"], v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Real answers of the binary have the documented shapes.
#[tokio::test]
async fn answers_have_the_documented_shapes() {
    let srv = Server::start().await;
    let doc = document(&srv).await;
    let ack = serde_json::json!({"$ref": "#/components/schemas/Ack"});
    assert!(conforms(
        &doc,
        &ack,
        &serde_json::json!({"id": "1", "status": "ok"}),
        ""
    )
    .is_ok());
    for wrong in [
        serde_json::json!({"id": "1", "status": "ok", "extra": 1}),
        serde_json::json!({"id": "1", "status": "fine"}),
        serde_json::json!({"status": "ok"}),
    ] {
        assert!(conforms(&doc, &ack, &wrong, "").is_err(), "{wrong}");
    }
    let (pk, did, _) = srv.device().await;
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/healthz".into(), None),
        ("GET", "/v1/products".into(), None),
        ("GET", format!("/v1/products/{pk}"), None),
        ("GET", format!("/v1/products/{pk}/secret"), None),
        ("GET", format!("/v1/devices?product_key={pk}"), None),
        ("GET", format!("/v1/devices/{did}"), None),
        ("GET", format!("/v1/devices/{did}/history"), None),
        ("GET", format!("/v1/devices/{did}/passcode"), None),
        (
            "POST",
            "/v1/apps".into(),
            Some(serde_json::json!({"name": "App", "product_keys": [pk]})),
        ),
        (
            "POST",
            "/v1/admin/developers".into(),
            Some(serde_json::json!({"email": "dev@maker.example",
                "password": "velvet tundra oxide lantern"})),
        ),
        ("GET", "/v1/admin/developers".into(), None),
        (
            "POST",
            format!("/v1/devices/{did}/commands"),
            Some(serde_json::json!({"set": {"power": true}})),
        ),
    ];
    for (method, uri, body) in calls {
        let template = uri.replace(&did, "{did}").replace(&pk, "{product_key}");
        shaped(&srv, &doc, (method, &uri, &template), Some(ADMIN), body).await;
    }

    // A developer's own answers.
    let password = "velvet tundra oxide lantern";
    let login = serde_json::json!({"email": "dev@maker.example", "password": password});
    let dev_path = "/v1/developers/login";
    let pair = shaped(&srv, &doc, ("POST", dev_path, dev_path), None, Some(login)).await;
    let dev = pair["access_token"].as_str().unwrap();
    let me = "/v1/developers/me";
    shaped(&srv, &doc, ("GET", me, me), Some(dev), None).await;
    let name = serde_json::json!({"name": "Maker Ltd"});
    let ents = "/v1/enterprises";
    let ent = shaped(&srv, &doc, ("POST", ents, ents), Some(dev), Some(name)).await;
    shaped(&srv, &doc, ("GET", ents, ents), Some(dev), None).await;
    let members = format!(
        "/v1/enterprises/{}/members",
        ent["enterprise_id"].as_str().unwrap()
    );
    let members_t = "/v1/enterprises/{id}/members";
    shaped(&srv, &doc, ("GET", &members, members_t), Some(dev), None).await;
    let totp = "/v1/developers/me/totp";
    shaped(&srv, &doc, ("POST", totp, totp), Some(dev), None).await;

    // An end user's: sign-up, activation (the code from the outbox), login, bind, lists.
    let app = srv
        .admin(
            "POST",
            "/v1/apps",
            Some(serde_json::json!({"name": "Lamp", "product_keys": [pk]})),
        )
        .await
        .1["app_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signup = serde_json::json!({"email": "me@example.com", "password": password});
    let (status, _) = app_post(&srv, &app, "/v1/users", &signup).await;
    assert_eq!(status, 201);
    let code = outbox_code(&srv, "me@example.com").await;
    let activate = serde_json::json!({"email": "me@example.com", "code": code});
    let path = "/v1/users/activate";
    shaped(&srv, &doc, ("POST", path, path), None, Some(activate)).await;
    let login = serde_json::json!({"username": "me@example.com", "password": password});
    let (_, pair) = app_post(&srv, &app, "/v1/login", &login).await;
    let at = "POST /v1/login 200";
    let schema = &doc["paths"]["/v1/login"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    conforms(&doc, schema, &pair, at).unwrap();
    let user = pair["access_token"].as_str().unwrap();
    let passcode = srv
        .admin("GET", &format!("/v1/devices/{did}/passcode"), None)
        .await
        .1;
    let bind = serde_json::json!({"did": did, "passcode": passcode["passcode"]});
    let b = "/v1/bindings";
    shaped(&srv, &doc, ("POST", b, b), Some(user), Some(bind)).await;
    shaped(&srv, &doc, ("GET", b, b), Some(user), None).await;
    let me = "/v1/users/me";
    shaped(&srv, &doc, ("GET", me, me), Some(user), None).await;
    let tokens = format!("/v1/devices/{did}/bind-tokens");
    let tokens_t = "/v1/devices/{did}/bind-tokens";
    shaped(&srv, &doc, ("POST", &tokens, tokens_t), Some(user), None).await;
    let shares = format!("/v1/devices/{did}/shares");
    let shares_t = "/v1/devices/{did}/shares";
    shaped(&srv, &doc, ("GET", &shares, shares_t), Some(user), None).await;
    let grants = "/v1/oauth/grants";
    shaped(&srv, &doc, ("GET", grants, grants), Some(user), None).await;
}

/// POST a JSON body with `X-Rampart-App-Id`; returns status and JSON answer.
async fn app_post(srv: &Server, app: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = srv
        .http_client
        .post(srv.url(path))
        .header("x-rampart-app-id", app)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The activation code sent to `to` (written to the outbox by a background task: the file is the
/// only signal, so this polls it).
async fn outbox_code(srv: &Server, to: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(srv.data().join("outbox"))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .find(|v| v["to"] == to && v["purpose"] == "activate");
        if let Some(v) = found {
            return v["code"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no code for {to}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Call `(method, uri, documented path)` and check the answer has the documented shape for its
/// status; returns the answer.
async fn shaped(
    srv: &Server,
    doc: &Value,
    (method, uri, template): (&str, &str, &str),
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (status, answer) = srv.call(method, uri, token, body).await;
    let template = template.split('?').next().unwrap();
    let response = &doc["paths"][template][method.to_lowercase()]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} {status} undocumented: {answer}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    let at = format!("{method} {template} {status}");
    if let Err(e) = conforms(doc, schema, &answer, &at) {
        panic!("{e}");
    }
    answer
}

/// Found by scripts/schemathesis.sh: a page far past the end (`(page - 1) * limit` beyond
/// `i64`) panicked the handler and dropped the connection. Every paged list the admin token
/// reaches answers the documented 400 for a page over the documented maximum, and an empty page
/// at the maximum.
#[tokio::test]
async fn pages_past_the_documented_maximum_answer_400() {
    let srv = Server::start().await;
    let doc = document(&srv).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let admin = get["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("admin").is_some()));
        let page = get["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "page");
        let (true, Some(page), false) = (admin, page, path.contains('{')) else {
            continue;
        };
        let max = page["schema"]["maximum"].as_i64().unwrap();
        let (status, body) = srv
            .admin("GET", &format!("{path}?page={max}&limit=200"), None)
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["data"], serde_json::json!([]), "{path}");
        for huge in [max + 1, i64::MAX] {
            let (status, body) = srv
                .admin("GET", &format!("{path}?page={huge}&limit=200"), None)
                .await;
            assert_eq!(status, 400, "{path}?page={huge}: {body}");
            assert_eq!(body["error"]["code"], "INVALID_REQUEST");
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} paged lists checked");
}

/// A model with an alarm point (`class`) is what `POST /v1/products` accepts and what the
/// document describes: the body conforms to the published `NewProduct`, the server takes it, and
/// the product it answers conforms to `Product`.
#[tokio::test]
async fn an_alarm_model_is_documented_and_accepted() {
    let srv = Server::start().await;
    let doc = document(&srv).await;
    let body = serde_json::json!({"name": "Boiler", "datapoints": [
        {"name": "power", "type": "bool", "writable": true},
        {"name": "overheat", "type": "bool", "class": "alert"},
        {"name": "pump_fault", "type": "bool", "class": "fault"}]});
    let new_product = serde_json::json!({"$ref": "#/components/schemas/NewProduct"});
    conforms(&doc, &new_product, &body, "NewProduct").unwrap();
    let (status, created) = srv.admin("POST", "/v1/products", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let pk = created["product_key"].as_str().unwrap();
    let (status, product) = srv.admin("GET", &format!("/v1/products/{pk}"), None).await;
    assert_eq!(status, 200, "{product}");
    assert_eq!(product["datapoints"][1]["class"], "alert");
    let schema = serde_json::json!({"$ref": "#/components/schemas/Product"});
    conforms(&doc, &schema, &product, "Product").unwrap();
}

/// `/docs` is the Swagger UI of the binary itself, under its own CSP, reading `/openapi.json`.
#[tokio::test]
async fn docs_are_served_by_the_binary() {
    let srv = Server::start().await;
    let resp = srv
        .http_client
        .get(srv.url("/docs/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(resp.text().await.unwrap().contains("swagger"));
    let resp = srv
        .http_client
        .get(srv.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("script-src"), "{csp}");
}
