//! Fuzz the enterprise API's request signature: the `Authorization: RAMPART-HMAC-SHA256 ...`
//! header parser and the canonical string the HMAC covers. The input is cut at newlines into a
//! header, a method, a path, a query and a body. Nothing may panic; a parsed header keeps the
//! documented grammar and parses the same once written out again; the sorted query does not
//! depend on the order of its pairs; the canonical string has its six lines; a signature of it
//! verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::access::access_keys::{
    canonical_string, parse_authorization, signature, sorted_query, SCHEME,
};
use rampart_proto::sign;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\n');
    let header = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("GET");
    let path = parts.next().unwrap_or("/v1/enterprise/devices");
    let query = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();

    let sorted = sorted_query(query);
    assert_eq!(
        sorted_query(&sorted),
        sorted,
        "not idempotent for {query:?}"
    );
    let reversed: Vec<&str> = query.split('&').rev().collect();
    assert_eq!(
        sorted_query(&reversed.join("&")),
        sorted,
        "order matters for {query:?}"
    );

    let Some(p) = parse_authorization(header) else {
        return;
    };
    assert!(!p.key_id.is_empty() && p.key_id.len() <= 64);
    assert!(p.key_id.bytes().all(|b| b.is_ascii_graphic()));
    assert!((8..=64).contains(&p.nonce.len()));
    assert!(p
        .nonce
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(p.signature.len(), 64);
    assert!(p
        .signature
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(p.ts_text.parse::<i64>().ok(), Some(p.ts));
    let again = format!(
        "{SCHEME} key_id={}, ts={}, nonce={}, signature={}",
        p.key_id, p.ts_text, p.nonce, p.signature
    );
    assert_eq!(parse_authorization(&again), Some(p));

    let canonical = canonical_string(method, path, query, body, p.ts_text, p.nonce);
    let lines: Vec<&str> = canonical.split('\n').collect();
    assert_eq!(lines.len(), 6, "{canonical:?}");
    assert_eq!(lines[0], method);
    assert_eq!(lines[1], path);
    assert_eq!(lines[2], sorted);
    assert_eq!(lines[3].len(), 64);
    assert_eq!((lines[4], lines[5]), (p.ts_text, p.nonce));
    let secret = p.key_id.as_bytes();
    let sig = signature(secret, &canonical);
    assert!(sign::verify_hex(secret, &canonical, &sig));
    assert_eq!(
        sign::verify_hex(secret, &canonical, p.signature),
        sig == p.signature
    );
});
