//! A tiny live-push consumer: connects to `GET /v1/ws` with an end user's access token and prints
//! each JSON message on one line, until the server closes the socket.
//!
//! ```text
//! cargo run -p rampart --example live_push -- \
//!     --url wss://localhost:8443/v1/ws --token rat_... --ca DATA/tls/cert.pem
//! ```
//!
//! `--ca` names the PEM certificate to trust (the server's self-signed one in `DATA/tls/`);
//! without it the system's web roots are used.

use clap::Parser;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Print the live push of a Rampart user, one JSON message per line")]
struct Args {
    /// The WebSocket URL, e.g. wss://localhost:8443/v1/ws
    #[arg(long)]
    url: String,
    /// The user's access token (`rat_...`), sent as `Authorization: Bearer`.
    #[arg(long, env = "RAMPART_ACCESS_TOKEN")]
    token: String,
    /// A PEM certificate to trust instead of the web roots.
    #[arg(long)]
    ca: Option<PathBuf>,
}

fn tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error>> {
    let pem = std::fs::read(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut req = args.url.as_str().into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", args.token))?,
    );
    let connector = match &args.ca {
        Some(ca) => Some(tokio_tungstenite::Connector::Rustls(tls(ca)?)),
        None => None,
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector).await?;
    eprintln!("connected; waiting for events");
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => println!("{}", t.as_str()),
            Message::Close(frame) => {
                eprintln!("closed: {frame:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
