//! A Rampart device on the stock `rumqttc` client, reconnecting by itself with a fresh password.
//!
//! A signed CONNECT password is single-use: its timestamp must be newer than the last one the
//! server accepted for the device. rumqttc reconnects on the next `poll` after an error and sends
//! whatever credentials its options hold, so set fresh ones before polling again.
//!
//! ```sh
//! cargo run -p rampart --example rumqttc_device -- HOST PORT CA_FILE DID DEVICE_SECRET
//! ```
//!
//! Prints a line per connection and drop, and publishes one report, `{"power": true}`, after each
//! connection. Runs until killed.

use hmac::{Hmac, Mac};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A user name and password for one CONNECT of `did`, signed now with the device secret.
pub fn fresh_credentials(did: &str, secret: &str) -> (String, String) {
    // Milliseconds, not seconds: a timestamp in seconds is refused as outside the clock window.
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("did={did}&ts={ts}").as_bytes());
    (
        format!("{did}|hmac-sha256|{ts}"),
        hex::encode(mac.finalize().into_bytes()),
    )
}

/// Connect to `host:port` over TLS (trusting the PEM `ca`), report after every connection, and
/// reconnect after every drop with fresh credentials; `event` hears `connected` and
/// `disconnected: ...`.
pub async fn run(
    host: &str,
    port: u16,
    ca: Vec<u8>,
    did: &str,
    secret: &str,
    event: impl Fn(&str),
) {
    let mut options = MqttOptions::new(did, host, port);
    let (user, password) = fresh_credentials(did, secret);
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::Tls(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth: None,
    }));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                event("connected");
                let topic = format!("dev/{did}/up");
                let _ = client
                    .publish(topic, QoS::AtLeastOnce, false, r#"{"power":true}"#)
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                event(&format!("disconnected: {e}"));
                // The next poll reconnects with these.
                let (user, password) = fresh_credentials(did, secret);
                eventloop.mqtt_options.set_credentials(user, password);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, ca, did, secret] = &args[..] else {
        eprintln!("usage: rumqttc_device HOST PORT CA_FILE DID DEVICE_SECRET");
        std::process::exit(2);
    };
    let ca = std::fs::read(ca).unwrap_or_else(|e| {
        eprintln!("{ca}: {e}");
        std::process::exit(2)
    });
    let port = port.parse().unwrap_or_else(|_| {
        eprintln!("PORT must be a number");
        std::process::exit(2)
    });
    run(host, port, ca, did, secret, |e| println!("{e}")).await;
}
