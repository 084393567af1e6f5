//! Device registration over HTTPS: `POST {api}/v1/device/register`.
//!
//! Owns the request body (signed with `rampart_proto::sign`) and the reading of the answer.
//! It never sends a secret: only its HMAC over the canonical string travels.
//!
//! - mode `product` (one secret per product): signed with the product secret; the server
//!   answers `{"did", "device_secret", "passcode"}`.
//! - mode `device` (one secret per device, from a factory batch): signed with the factory
//!   secret of serial `hardware_id`; the server answers `{"did", "passcode"}` and the device
//!   keeps its factory secret as its device secret.
//!
//! Hardware registered before is refused (409 `ALREADY_REGISTERED`) unless the request proves the
//! device's current secret ([`RegisterParams::current_secret`]: the answer carries a new
//! `device_secret` and no passcode) or the product's owner opened a re-provisioning window (a new
//! secret and a new passcode).

use rampart_proto::sign::{hmac_hex, register_string};
use serde::Deserialize;

use crate::{Error, Secret};

/// Which secret proves the device's right to register.
#[derive(Debug, Clone)]
pub enum RegisterMode {
    /// One product, one secret.
    Product { product_secret: Secret },
    /// One device, one secret (factory batch).
    Device { factory_secret: Secret },
}

impl RegisterMode {
    fn wire_name(&self) -> &'static str {
        match self {
            RegisterMode::Product { .. } => "product",
            RegisterMode::Device { .. } => "device",
        }
    }

    fn key(&self) -> &Secret {
        match self {
            RegisterMode::Product { product_secret } => product_secret,
            RegisterMode::Device { factory_secret } => factory_secret,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegisterParams {
    pub product_key: String,
    /// MAC/IMEI in product mode, the factory serial in device mode.
    pub hardware_id: String,
    pub mode: RegisterMode,
    /// The device's current secret, when it registered before: the request then carries
    /// `device_sign` and the server gives the device a new secret.
    pub current_secret: Option<Secret>,
}

/// What the cloud issued for this device.
#[derive(Debug, Clone)]
pub struct Registration {
    pub did: String,
    /// The secret the device signs CONNECT with (the factory secret in device mode).
    pub device_secret: Secret,
    /// The code a user enters to bind the device; only at a first registration and at a
    /// re-provisioning.
    pub passcode: Option<Secret>,
}

/// Register a device. `api` is the HTTPS base URL, e.g. `https://cloud.example:8443`.
pub async fn register(
    http: &reqwest::Client,
    api: &str,
    req: RegisterParams,
) -> Result<Registration, Error> {
    let url = format!("{}/v1/device/register", api.trim_end_matches('/'));
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let body = request_body(&req, crate::now_ms(), &nonce);
    let resp = http.post(&url).json(&body).send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    parse_response(status, &bytes, req.mode)
}

/// The signed JSON body for `ts` and `nonce`.
pub(crate) fn request_body(req: &RegisterParams, ts: i64, nonce: &str) -> serde_json::Value {
    let msg = register_string(&req.product_key, &req.hardware_id, ts, nonce);
    let sign = hmac_hex(req.mode.key().as_bytes(), &msg);
    let mut body = serde_json::json!({
        "product_key": req.product_key,
        "hardware_id": req.hardware_id,
        "ts": ts,
        "nonce": nonce,
        "mode": req.mode.wire_name(),
        "sign": sign,
    });
    if let Some(current) = &req.current_secret {
        body["device_sign"] = hmac_hex(current.as_bytes(), &msg).into();
    }
    body
}

#[derive(Deserialize)]
struct Answer {
    did: String,
    #[serde(default)]
    device_secret: Option<Secret>,
    #[serde(default)]
    passcode: Option<Secret>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// Read the server's answer to a registration made in `mode` (public for the fuzz targets).
pub fn parse_response(status: u16, body: &[u8], mode: RegisterMode) -> Result<Registration, Error> {
    if !(200..300).contains(&status) {
        return Err(match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => Error::Rejected {
                status,
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => Error::Rejected {
                status,
                code: format!("HTTP_{status}"),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        });
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("registration answer: {e}")))?;
    if a.did.is_empty() {
        return Err(Error::invalid("registration answer: empty did"));
    }
    let device_secret = match (mode, a.device_secret) {
        (RegisterMode::Product { .. }, Some(s)) if !s.is_empty() => s,
        (RegisterMode::Product { .. }, _) => {
            return Err(Error::invalid(
                "registration answer: product mode needs a device_secret",
            ))
        }
        // A new secret (rotation, re-provisioning) replaces the factory secret.
        (RegisterMode::Device { .. }, Some(s)) if !s.is_empty() => s,
        // A first registration: the factory secret stays the device secret.
        (RegisterMode::Device { factory_secret }, _) => factory_secret,
    };
    Ok(Registration {
        did: a.did,
        device_secret,
        passcode: a.passcode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mode: RegisterMode) -> RegisterParams {
        RegisterParams {
            product_key: "pk1".into(),
            hardware_id: "pk1-b1-0001".into(),
            mode,
            current_secret: None,
        }
    }

    #[test]
    fn body_is_signed_with_the_mode_secret() {
        let p = params(RegisterMode::Device {
            factory_secret: "fs".into(),
        });
        let b = request_body(&p, 1_700_000_000_000, "00ff");
        let expect = hmac_hex(
            b"fs",
            "product_key=pk1&hardware_id=pk1-b1-0001&ts=1700000000000&nonce=00ff",
        );
        assert_eq!(b["sign"], expect);
        assert_eq!(b["mode"], "device");
        assert_eq!(b["ts"], 1_700_000_000_000_i64);
        assert_eq!(b["nonce"], "00ff");
        assert!(!b.to_string().contains("\"fs\""));

        let p = params(RegisterMode::Product {
            product_secret: "ps".into(),
        });
        let b = request_body(&p, 5, "n");
        assert_eq!(b["mode"], "product");
        assert_eq!(
            b["sign"],
            hmac_hex(
                b"ps",
                "product_key=pk1&hardware_id=pk1-b1-0001&ts=5&nonce=n"
            )
        );
    }

    #[test]
    fn answers() {
        let dev = || RegisterMode::Device {
            factory_secret: "fs".into(),
        };
        let prod = || RegisterMode::Product {
            product_secret: "ps".into(),
        };
        let r = parse_response(200, br#"{"did":"d1","passcode":"123456"}"#, dev()).unwrap();
        assert_eq!(r.did, "d1");
        assert_eq!(r.device_secret.expose(), "fs");
        assert_eq!(r.passcode.as_ref().unwrap().expose(), "123456");
        assert!(!format!("{r:?}").contains("fs"));

        let r = parse_response(
            200,
            br#"{"did":"d2","device_secret":"ds","passcode":"1"}"#,
            prod(),
        )
        .unwrap();
        assert_eq!(r.device_secret.expose(), "ds");
        assert!(parse_response(200, br#"{"did":"d2","passcode":"1"}"#, prod()).is_err());
        // a rotation: a new secret, no passcode (in mode device too)
        let r = parse_response(200, br#"{"did":"d2","device_secret":"new"}"#, dev()).unwrap();
        assert_eq!(r.device_secret.expose(), "new");
        assert!(r.passcode.is_none());

        match parse_response(
            403,
            br#"{"error":{"code":"BAD_SIGNATURE","message":"no"}}"#,
            dev(),
        ) {
            Err(Error::Rejected {
                status: 403,
                code,
                message,
            }) => assert_eq!((code.as_str(), message.as_str()), ("BAD_SIGNATURE", "no")),
            other => panic!("{other:?}"),
        }
        match parse_response(502, b"bad gateway", dev()) {
            Err(e @ Error::Rejected { .. }) => assert!(e.is_transient()),
            other => panic!("{other:?}"),
        }
    }
}
