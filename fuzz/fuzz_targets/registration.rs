//! Fuzz registration parsing on both sides. The server reads arbitrary bytes as the JSON body of
//! `POST /v1/device/register`, checks its grammar and builds the string the signature covers; the
//! device SDK reads arbitrary bytes as the server's answer under some status. Nothing may panic;
//! the signed string splits back into exactly the fields it was built from (so two requests never
//! sign the same string), and a signature verifies exactly when it is the HMAC of that string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::device::registry::RegisterRequest;
use rampart_device::register::parse_response;
use rampart_device::{RegisterMode, Secret};
use rampart_proto::sign;

const KEY: &[u8] = b"fuzz-product-secret";
const STATUSES: [u16; 8] = [200, 201, 204, 400, 401, 404, 429, 500];

fuzz_target!(|data: &[u8]| {
    server_side(data);
    if let Some((&first, body)) = data.split_first() {
        device_side(first, body);
    }
});

fn server_side(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<RegisterRequest>(data) else {
        return;
    };
    let Ok((pk, msg)) = req.signed_message() else {
        return;
    };
    let fields: Vec<&str> = msg.split('&').collect();
    let ts = req.ts.to_string();
    let expected = [
        ("product_key", pk.as_str()),
        ("hardware_id", req.hardware_id.as_str()),
        ("ts", ts.as_str()),
        ("nonce", req.nonce.as_str()),
    ];
    assert_eq!(fields.len(), expected.len(), "{msg}");
    for (field, (name, value)) in fields.iter().zip(expected) {
        assert_eq!(field.split_once('='), Some((name, value)), "{msg}");
    }
    let good = sign::hmac_hex(KEY, &msg);
    assert!(sign::verify_hex(KEY, &msg, &good));
    assert_eq!(
        sign::verify_hex(KEY, &msg, &req.sign),
        req.sign.eq_ignore_ascii_case(&good),
        "sign {:?}",
        req.sign
    );
}

fn device_side(first: u8, body: &[u8]) {
    let status = STATUSES[usize::from(first) % STATUSES.len()];
    let mode = if first & 0x80 == 0 {
        RegisterMode::Product {
            product_secret: Secret::new("product-secret"),
        }
    } else {
        RegisterMode::Device {
            factory_secret: Secret::new("factory-secret"),
        }
    };
    let factory = matches!(mode, RegisterMode::Device { .. });
    if let Ok(reg) = parse_response(status, body, mode) {
        assert!((200..300).contains(&status));
        assert!(!reg.did.is_empty());
        assert!(!reg.device_secret.is_empty());
        if factory {
            assert_eq!(reg.device_secret.expose(), "factory-secret");
        }
    }
}
