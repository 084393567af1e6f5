//! `rampart events tail`: the live device events of the running server in the terminal, one line
//! per event, from a WebSocket: `GET /v1/admin/events` (every device) for an admin token, the live
//! push `GET /v1/ws` for an end user's token (`rat_`), `GET /v1/developers/ws` for a developer's
//! (`rdt_`).

use crate::common::AnyResult;
use crate::http::{Api, Remote};
use crate::output::utc;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Subcommand, Debug)]
pub(crate) enum EventsCmd {
    /// Print device events as they happen (presence, reports, acks, registrations), one line
    /// each, until the server closes the stream or Ctrl-C: every device's for an admin token,
    /// the bound devices' for an end user's token, the readable products' for a developer's.
    Tail(TailArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    remote: Remote,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Only the events of this device.
    #[arg(long)]
    did: Option<String>,
}

pub(crate) async fn run(cmd: EventsCmd) -> AnyResult {
    let EventsCmd::Tail(a) = cmd;
    tail(a).await
}

/// The stream a token reads: end users and developers have their own; any other token is taken
/// for an admin token (the bootstrap one has no fixed prefix).
fn stream_path(token: &str) -> &'static str {
    if token.starts_with("rat_") {
        "/v1/ws"
    } else if token.starts_with("rdt_") {
        "/v1/developers/ws"
    } else {
        "/v1/admin/events"
    }
}

async fn tail(a: TailArgs) -> AnyResult {
    let api = Api::new(&a.remote)?;
    let base = api.base();
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        return Err(format!("{base}: not an http:// or https:// URL"));
    };
    let url = format!("{ws_base}{}", stream_path(api.token()));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", api.token()))
            .map_err(|_| "the token is not a valid header value")?,
    );
    let connector = match api.ca() {
        Some(ca) => Some(tokio_tungstenite::Connector::Rustls(tls(ca)?)),
        None => None,
    };
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                let body = r
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .unwrap_or_default();
                match (
                    body["error"]["code"].as_str(),
                    body["error"]["message"].as_str(),
                ) {
                    (Some(c), Some(m)) => format!("{} {c}: {m}", r.status().as_u16()),
                    _ => format!("{url}: {}", r.status()),
                }
            }
            e => format!("{url}: {e}"),
        })?;
    eprintln!("connected to {url}; waiting for events (Ctrl-C stops)");
    let mut seen = 0u64;
    if a.count == Some(0) {
        return Ok(());
    }
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| format!("{url}: {e}"))? {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if let Some(did) = &a.did {
                    if v["did"].as_str() != Some(did) {
                        continue;
                    }
                }
                if api.json {
                    println!("{}", t.as_str());
                } else {
                    println!("{}", line(&v));
                }
                seen += 1;
                if a.count.is_some_and(|n| seen >= n) {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            }
            Message::Close(frame) => {
                return match frame {
                    Some(f) if u16::from(f.code) == 4401 => {
                        Err("the server closed the stream: the token expired or was revoked".into())
                    }
                    Some(f) => {
                        eprintln!("closed by the server: {} {}", u16::from(f.code), f.reason);
                        Ok(())
                    }
                    None => Ok(()),
                };
            }
            _ => {}
        }
    }
    Ok(())
}

/// One event as a line for a person: time, device, kind, then what happened.
fn line(v: &Value) -> String {
    let ts = v["ts"].as_i64().map(utc).unwrap_or_else(|| "-".into());
    let did = v["did"].as_str().unwrap_or("-");
    let kind = v["kind"].as_str().unwrap_or("?");
    let what = match kind {
        "status" => v["values"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, x)| format!("{k}={x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        "presence" => match (v["online"].as_bool(), v["reason"].as_str()) {
            (Some(true), _) => "online".into(),
            (_, Some(r)) => format!("offline ({r})"),
            _ => "offline".into(),
        },
        "ack" => format!(
            "command {} {}",
            v["id"].as_str().unwrap_or("?"),
            v["status"].as_str().unwrap_or("?")
        ),
        "registered" => {
            if v["created"].as_bool() == Some(true) {
                "new device".into()
            } else {
                "registered again".into()
            }
        }
        _ => v.to_string(),
    };
    format!("{ts}  {did}  {kind:<10} {what}")
}

/// A TLS configuration trusting the certificates in `ca`.
fn tls(ca: &Path) -> AnyResult<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_for_people() {
        let v = json!({"did": "d1", "kind": "status", "ts": 0, "values": {"power": true}});
        assert_eq!(line(&v), "1970-01-01 00:00:00  d1  status     power=true");
        let v = json!({"did": "d1", "kind": "presence", "online": false, "reason": "disconnect", "ts": 0});
        assert!(line(&v).ends_with("presence   offline (disconnect)"));
    }

    #[test]
    fn each_kind_of_token_reads_its_stream() {
        assert_eq!(stream_path("rdt_x"), "/v1/developers/ws");
        assert_eq!(stream_path("rat_x"), "/v1/ws");
        assert_eq!(stream_path("rpa_x"), "/v1/admin/events");
    }
}
