//! Finding devices: `GET /v1/devices?q=` (a case-insensitive prefix of the did or the hardware
//! id, paged, `%` and `_` taken literally, a developer's search inside their products), and the
//! operator's live events with the admin token in the query, as a browser opens them, the token
//! never reaching the log.

use crate::accounts::{open_ws, Ws};
use crate::commands::fake_device;
use crate::support::*;
use serde_json::{json, Value};

/// The dids of a page, and its total.
fn page(v: &Value) -> (Vec<String>, i64) {
    let dids = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|d| d["did"].as_str().unwrap().to_owned())
        .collect();
    (dids, v["meta"]["total"].as_i64().unwrap())
}

async fn search(srv: &Server, token: Option<&str>, query: &str) -> (Vec<String>, i64) {
    let (s, v) = srv
        .call("GET", &format!("/v1/devices?{query}"), token, None)
        .await;
    assert_eq!(s, 200, "{query}: {v}");
    page(&v)
}

#[tokio::test]
async fn devices_are_found_by_a_prefix_of_did_or_hardware_id() {
    let srv = Server::start().await;
    let admin = Some(ADMIN);
    let tag = nonce();
    let (pk1, ps1) = srv.product(true, false).await;
    let (pk2, ps2) = srv.product(true, false).await;
    let mut dids = Vec::new();
    for (pk, ps, hw) in [
        (&pk1, &ps1, format!("SN-{tag}-001")),
        (&pk1, &ps1, format!("SN-{tag}-002")),
        (&pk1, &ps1, format!("sn-{tag}-103")),
        (&pk2, &ps2, format!("SN-{tag}-004")),
        (&pk2, &ps2, format!("MAC_{tag}%9")),
    ] {
        dids.push(srv.register(pk, ps, &hw).await.0);
    }

    // Either case finds the hardware ids, across products, oldest first.
    let upper = tag.to_uppercase();
    let (found, total) = search(&srv, admin, &format!("q=sn-{upper}-0")).await;
    assert_eq!(
        (found, total),
        (vec![dids[0].clone(), dids[1].clone(), dids[3].clone()], 3)
    );
    let (found, total) = search(&srv, admin, &format!("q=SN-{tag}")).await;
    assert_eq!((found.len(), total), (4, 4));
    // One product's; pages of the matches, each with the total of all of them.
    let (found, total) = search(&srv, admin, &format!("q=sn-{tag}&product_key={pk1}")).await;
    assert_eq!((found, total), (dids[..3].to_vec(), 3));
    let (found, total) = search(&srv, admin, &format!("q=sn-{tag}&limit=3&page=2")).await;
    assert_eq!((found, total), (vec![dids[3].clone()], 4));
    let (found, total) = search(&srv, admin, &format!("q=sn-{tag}&limit=3&page=3")).await;
    assert_eq!((found.len(), total), (0, 4));
    // A prefix of a did; the middle of a value finds nothing.
    let (found, _) = search(&srv, admin, &format!("q={}", &dids[2][..dids[2].len() - 1])).await;
    assert_eq!(found, vec![dids[2].clone()]);
    let (found, total) = search(&srv, admin, &format!("q={tag}")).await;
    assert_eq!((found.len(), total), (0, 0));
    // `%` and `_` are characters, not wildcards (sent percent-encoded, as a browser does).
    let (found, _) = search(&srv, admin, &format!("q=mac_{tag}%25")).await;
    assert_eq!(found, vec![dids[4].clone()]);
    let (found, total) = search(&srv, admin, "q=%25").await;
    assert_eq!((found.len(), total), (0, 0));
    let (found, total) = search(&srv, admin, &format!("q=MAC%25{tag}")).await;
    assert_eq!((found.len(), total), (0, 0));
    let (found, total) = search(&srv, admin, "q=_").await;
    assert_eq!((found.len(), total), (0, 0));
    // An empty search is no search.
    let (_, all) = search(&srv, admin, "").await;
    let (_, empty) = search(&srv, admin, "q=").await;
    assert_eq!((all, empty), (5, 5));

    // What no id can be is refused.
    for bad in [
        format!("q={}", "a".repeat(65)),
        "q=sn%20x".to_owned(),
        "q=%C3%A9".to_owned(),
        "q=a&page=0".to_owned(),
    ] {
        let (s, v) = srv
            .call("GET", &format!("/v1/devices?{bad}"), admin, None)
            .await;
        assert_error(s, &v, 400, "INVALID_REQUEST");
    }
    let (s, v) = srv.call("GET", "/v1/devices?q=sn", None, None).await;
    assert_error(s, &v, 401, "UNAUTHORIZED");

    // A developer's search stays inside the products they may read.
    let email = format!("finder-{tag}@example.com");
    let password = "Copper-Window-Marble-58";
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let dev = v["access_token"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            "/v1/products",
            Some(&dev),
            Some(json!({"name": "Finder", "identity": {"dynamic_registration": true, "allowlist": false},
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (mine, secret) = (
        v["product_key"].as_str().unwrap().to_owned(),
        v["product_secret"].as_str().unwrap().to_owned(),
    );
    let (own, _, _) = srv.register(&mine, &secret, &format!("SN-{tag}-500")).await;
    let (found, total) = search(&srv, Some(&dev), &format!("q=sn-{tag}")).await;
    assert_eq!((found, total), (vec![own.clone()], 1));
    let (found, total) = search(&srv, Some(&dev), &format!("q=sn-{tag}&product_key={mine}")).await;
    assert_eq!((found, total), (vec![own], 1));
    let (s, v) = srv
        .call(
            "GET",
            &format!("/v1/devices?q=sn&product_key={pk1}"),
            Some(&dev),
            None,
        )
        .await;
    assert!(s == 403 || s == 404, "{s} {v}");
}

#[tokio::test]
async fn operator_events_take_the_admin_token_in_the_query_and_never_log_it() {
    let mut srv = Server::process_logging(&[("RUST_LOG", "trace")]).await;
    let (_, did, secret) = srv.device().await;
    let (s, v) = srv
        .admin("POST", "/v1/admin/tokens", Some(json!({"name": "browser"})))
        .await;
    assert_eq!(s, 201, "{v}");
    let named = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();

    // The bootstrap token and a named one, each in the query: the device's events arrive.
    let mut boot = open_ws(&srv, "/v1/admin/events", ADMIN, true).await;
    let mut ws = open_ws(&srv, "/v1/admin/events", &named, true).await;
    let _dev = fake_device(&srv, &did, &secret, |_| None).await;
    for w in [&mut boot, &mut ws] {
        let ev = w.next_kind("presence").await;
        assert_eq!(
            (ev["did"].as_str(), &ev["online"]),
            (Some(did.as_str()), &json!(true)),
            "{ev}"
        );
    }

    // A wrong or empty token in the query is refused like a wrong header; a right one without
    // the upgrade asks for it.
    for q in ["access_token=rpa_wrong", "access_token=", "access_token"] {
        let (s, v) = srv
            .call("GET", &format!("/v1/admin/events?{q}"), None, None)
            .await;
        assert_error(s, &v, 401, "UNAUTHORIZED");
    }
    let (s, v) = srv
        .call(
            "GET",
            &format!("/v1/admin/events?access_token={named}"),
            None,
            None,
        )
        .await;
    assert_error(s, &v, 426, "UPGRADE_REQUIRED");
    // A user's token is no admin token.
    let (s, v) = srv
        .call(
            "GET",
            "/v1/admin/events?access_token=rat_not_an_admin",
            None,
            None,
        )
        .await;
    assert_error(s, &v, 401, "UNAUTHORIZED");

    // Revoked, the named token loses its stream (checked every few seconds).
    let (s, _) = srv
        .admin("DELETE", &format!("/v1/admin/tokens/{id}"), None)
        .await;
    assert_eq!(s, 200);
    let closed = closes(&mut ws).await;
    assert_eq!(closed, json!(4401));
    drop(boot);

    srv.terminate_and_wait().await;
    let log = srv.log_text();
    assert!(
        log.lines().filter(|l| l.contains("TRACE")).count() > 100,
        "the log is at trace level"
    );
    for (what, t) in [
        ("the named admin token", named.as_str()),
        ("the bootstrap token", ADMIN),
    ] {
        if let Some(line) = log.lines().find(|l| l.contains(t)) {
            panic!(
                "{what} is in the log: {}",
                line.chars().take(300).collect::<String>()
            );
        }
    }
}

/// The close code once the stream ends (events before it skipped).
async fn closes(ws: &mut Ws) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream stayed open"
        );
        let v = ws.next().await;
        if let Some(c) = v.get("closed") {
            return c.clone();
        }
    }
}
