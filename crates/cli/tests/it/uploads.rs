//! Uploads: an allowlist file is size-capped, typed by its content, and kept by
//! its SHA-256 under the data directory, never under a name the client gave. And the HTTP/2
//! side of the API: offered by ALPN, with its limits.

use crate::support::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// POST raw bytes with a `Content-Type` (none when `None`); returns status and JSON body.
pub(crate) async fn upload(
    srv: &Server,
    pk: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut rb = srv
        .http_client
        .post(srv.url(&format!("/v1/products/{pk}/allowlist/file")))
        // A client-chosen name must not matter.
        .header(
            "content-disposition",
            "attachment; filename=\"../../evil.csv\"",
        )
        .body(body);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    (status, resp.json().await.unwrap())
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_allowlist_file_is_checked_by_content_and_kept_by_hash() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, true).await;
    let file = "mac,batch\r\n# line 2 is a comment\r\nAA:BB:CC:00:00:01,7\r\nIMEI-490154203237518,7\r\n\r\nAA:BB:CC:00:00:01,8\r\n";
    let (s, v) = upload(
        &srv,
        &pk,
        Some("text/csv; charset=utf-8"),
        file.into(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let sha = hex::encode(Sha256::digest(file.as_bytes()));
    assert_eq!(v["sha256"], sha, "{v}");
    assert_eq!(v["size"], file.len(), "{v}");
    assert_eq!(
        (v["submitted"].as_u64(), v["added"].as_u64()),
        (Some(2), Some(2))
    );

    // Kept under its hash, and nothing else was written.
    let uploads = srv.data().join("uploads");
    assert_eq!(
        files_under(&uploads),
        [format!("sha256/{}/{sha}", &sha[..2])]
    );
    assert_eq!(
        std::fs::read(uploads.join("sha256").join(&sha[..2]).join(&sha)).unwrap(),
        file.as_bytes()
    );
    assert!(!srv.data().join("evil.csv").exists());

    // The same file again: the same name, nothing new.
    let (s, v) = upload(&srv, &pk, Some("text/csv"), file.into(), Some(ADMIN)).await;
    assert_eq!((s, v["added"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(files_under(&uploads).len(), 1);

    // The ids are on the allowlist: an uploaded IMEI registers.
    srv.register(&pk, &ps, "IMEI-490154203237518").await;
}

#[tokio::test]
async fn uploads_of_the_wrong_type_size_or_content_are_refused() {
    let srv = Server::start_with(&[("RAMPART_UPLOADS__MAX_ALLOWLIST_BYTES", "1024")]).await;
    let (pk, _) = srv.product(true, true).await;
    let gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03AA:BB".to_vec();
    for (ct, body, needle) in [
        (Some("text/csv"), gz.clone(), "gzip"),
        (
            Some("text/plain"),
            b"<!DOCTYPE html><script>alert(1)</script>".to_vec(),
            "markup",
        ),
        (Some("text/plain"), b"AA:BB\x00CC\n".to_vec(), "binary"),
        (Some("text/plain"), b"AA:BB\xff\xfe\n".to_vec(), "binary"),
        (
            Some("application/json"),
            b"AA:BB\n".to_vec(),
            "application/json",
        ),
        (
            Some("text/csv; charset=latin1"),
            b"AA:BB\n".to_vec(),
            "latin1",
        ),
        (None, b"AA:BB\n".to_vec(), "(none)"),
    ] {
        let (s, v) = upload(&srv, &pk, ct, body, Some(ADMIN)).await;
        assert_eq!(s, 415, "{ct:?} {v}");
        assert_eq!(v["error"]["code"], "UNSUPPORTED_MEDIA_TYPE", "{v}");
        let msg = v["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(&needle.to_lowercase()), "{ct:?}: {msg}");
    }

    // Over the cap: 413, with a declared length and without one (chunked).
    let big = "AA:BB:CC:00:00:01\n".repeat(100).into_bytes();
    let (s, v) = upload(&srv, &pk, Some("text/plain"), big.clone(), Some(ADMIN)).await;
    assert_error(s, &v, 413, "PAYLOAD_TOO_LARGE");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let resp = srv
        .http_client
        .post(srv.url(&format!("/v1/products/{pk}/allowlist/file")))
        .header("content-type", "text/plain")
        .bearer_auth(ADMIN)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE", "{v}");

    // A bad id names its line; an empty list is refused.
    let (s, v) = upload(
        &srv,
        &pk,
        Some("text/plain"),
        b"AA:BB:CC:00:00:01\nnot valid\n".to_vec(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2:"),
        "{v}"
    );
    let (s, _) = upload(
        &srv,
        &pk,
        Some("text/plain"),
        b"# nothing\n".to_vec(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, 400);

    // No credentials: 401 before the body matters; an unknown product: 404.
    let (s, _) = upload(&srv, &pk, Some("text/plain"), b"AA:BB\n".to_vec(), None).await;
    assert_eq!(s, 401);
    let (s, _) = upload(
        &srv,
        "aaaaaaaaaaaaaaaa",
        Some("text/plain"),
        b"AA:BB\n".to_vec(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, 404);

    // Nothing refused was kept.
    assert!(files_under(&srv.data().join("uploads")).is_empty());
}

#[tokio::test]
async fn https_offers_http2_by_alpn_and_http1_stays() {
    let srv = Server::start().await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(srv.ca_path()).unwrap()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let resp = h2.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("strict-transport-security").is_some());
    // An early answer to an upload still being sent reaches the client: 413 for a body over the
    // limit, 401 without credentials (the server resets the stream with NO_ERROR after it).
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    for (token, status, code) in [
        (Some(ADMIN), 413, "PAYLOAD_TOO_LARGE"),
        (None, 401, "UNAUTHORIZED"),
    ] {
        let mut rb = h2
            .post(srv.url("/v1/products"))
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), status);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    // The connection still serves.
    let resp = h2.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // A client that offers only HTTP/1.1 gets HTTP/1.1.
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // With HTTP/2 off, ALPN offers only HTTP/1.1.
    let srv = Server::start_with(&[("RAMPART_HTTP__HTTP2", "false")]).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(srv.ca_path()).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let resp = c.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status().as_u16(), 200);
}
