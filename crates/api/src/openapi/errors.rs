//! The error answers of the document, built from [`ErrorCode`]: an operation names the codes it
//! can answer (with [`errors!`](crate::errors)), and each code brings its status and meaning.
//! Also the rate-limit headers every counted answer carries.
//!
//! Only descriptions: nothing here builds an answer the server sends.

pub(crate) use crate::error::ErrorCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::openapi::{RefOr, Response};

/// A type whose `utoipa::IntoResponses` are the error answers of the listed codes, for the
/// `responses(...)` of a `#[utoipa::path]`: `errors!(CreateProductErrors: Unauthorized, ...)`.
#[macro_export]
#[doc(hidden)]
macro_rules! errors {
    ($(#[$m:meta])* $name:ident: $($code:ident),+ $(,)?) => {
        $(#[$m])*
        pub(crate) struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::openapi::errors::responses(&[$($crate::error::ErrorCode::$code),+])
            }
        }
    };
}

/// The error answers of `codes`, one per status.
pub(crate) fn responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    by_status(codes)
        .into_iter()
        .map(|(status, codes)| {
            let r: Response = serde_json::from_value(response(&codes))
                .expect("an error answer is a valid OpenAPI response");
            (status.to_string(), RefOr::T(r))
        })
        .collect()
}

/// `codes` grouped by their status.
pub(crate) fn by_status(codes: &[ErrorCode]) -> BTreeMap<u16, BTreeSet<ErrorCode>> {
    let mut out: BTreeMap<u16, BTreeSet<ErrorCode>> = BTreeMap::new();
    for c in codes {
        out.entry(c.status().as_u16()).or_default().insert(*c);
    }
    out
}

/// The answer `{"error": {"code", "message"}}` with one of `codes`, all of one status; a 429
/// carries the rate-limit headers.
pub(crate) fn response(codes: &BTreeSet<ErrorCode>) -> Value {
    let mut names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    let mut sorted: Vec<&ErrorCode> = codes.iter().collect();
    sorted.sort_by_key(|c| c.as_str());
    let lines: Vec<String> = sorted
        .iter()
        .map(|c| format!("`{}`: {}", c.as_str(), c.meaning()))
        .collect();
    let mut r = json!({
        "description": lines.join("; "),
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": names},
                    "message": {"type": "string"},
                    "limit": {"type": "string", "description": "with `RATE_LIMITED` from a named limit: its name"}
                }
            }}
        }}}
    });
    if let Some(first) = sorted.first() {
        r["content"]["application/json"]["example"] =
            json!({"error": {"code": first.as_str(), "message": first.meaning()}});
    }
    if codes.iter().any(|c| c.status().as_u16() == 429) {
        r["headers"] = rate_headers(true);
    }
    r
}

/// The headers of an answer counted under a limit (all four on a 429; the first three on a
/// signed request's success).
pub(crate) fn rate_headers(refusal: bool) -> Value {
    let int = json!({"type": "integer"});
    let mut h = json!({
        "X-RateLimit-Limit": {"description": "the size of the limit (calls per window, or the burst of a rate)", "schema": int},
        "X-RateLimit-Remaining": {"description": "calls left in the window", "schema": int},
        "X-RateLimit-Reset": {"description": "Unix time (seconds) at which the limit is whole again", "schema": int},
    });
    if refusal {
        h["Retry-After"] =
            json!({"description": "seconds to wait before the next call", "schema": int});
    }
    h
}

/// The codes an error answer in the document lists (empty for other answers).
pub(crate) fn codes_of(response: &Value) -> Vec<ErrorCode> {
    response["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(ErrorCode::parse)
        .collect()
}
