//! The client of a running server's HTTP API for the online commands: where the server is
//! (`--url`, else the data directory's `listeners.json`, else the configured listen address),
//! which certificate to trust (`--ca`, else the data directory's `tls/cert.pem`), and the token.
//! An API error becomes the command's error, carrying the server's code and message.

use crate::common::{load_config, AnyResult, DataArgs};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How to reach a running server.
#[derive(Args, Clone, Debug)]
pub(crate) struct OnlineArgs {
    /// API base URL, e.g. https://rampart.example:8443 (default: the HTTP listener in the data
    /// directory's listeners.json, else https://127.0.0.1 on the configured `http.listen` port).
    #[arg(long, env = "RAMPART_URL", global = true)]
    pub(crate) url: Option<String>,
    /// Bearer token: an admin token (or, where the API allows it, a user's or developer's).
    #[arg(long, env = "RAMPART_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// PEM certificate to trust (default: the data directory's tls/cert.pem when it exists, then
    /// the web's public roots).
    #[arg(long, global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Both halves of an online command's arguments: the data directory (to find the server) and
/// the connection.
#[derive(Args, Clone, Debug)]
pub(crate) struct Remote {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) online: OnlineArgs,
}

/// Where the server is and how to call it.
pub(crate) struct Api {
    base: String,
    token: String,
    ca: Option<PathBuf>,
    client: reqwest::Client,
    /// `--json`: print answers as JSON.
    pub(crate) json: bool,
}

/// The API base URL from `listeners.json` in `dir`, if the file is there and names it. A wildcard
/// address is reached on the loopback address of its family.
pub(crate) fn url_from_listeners(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("listeners.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let addr: SocketAddr = v["http"].as_str()?.parse().ok()?;
    let tls = v["http_tls"].as_bool().unwrap_or(true);
    Some(base_url(addr, tls))
}

fn base_url(mut addr: SocketAddr, tls: bool) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

impl Api {
    /// A client for `r`; fails without a token.
    pub(crate) fn new(r: &Remote) -> AnyResult<Api> {
        let token = r
            .online
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or("no token: pass --token or set RAMPART_TOKEN")?;
        Api::with_token(r, token)
    }

    /// A client for `r` with this token (which may be empty for unauthenticated calls).
    pub(crate) fn with_token(r: &Remote, token: String) -> AnyResult<Api> {
        let cfg = load_config(&r.data)?;
        let base = match &r.online.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => match url_from_listeners(&cfg.data_dir) {
                Some(u) => u,
                None => {
                    let addr: SocketAddr = cfg
                        .http
                        .listen
                        .parse()
                        .map_err(|e| format!("http.listen {}: {e}", cfg.http.listen))?;
                    base_url(addr, cfg.http.tls)
                }
            },
        };
        let ca = match &r.online.ca {
            Some(ca) => Some(ca.clone()),
            None => Some(cfg.data_dir.join("tls/cert.pem")).filter(|p| p.exists()),
        };
        let mut b = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(|e| e.to_string())?;
        Ok(Api {
            base,
            token,
            ca,
            client,
            json: r.online.json,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The certificate this client trusts besides the web's roots.
    pub(crate) fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    pub(crate) async fn get(&self, path: &str) -> AnyResult<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> AnyResult<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> AnyResult<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// One call; a non-2xx answer is an error naming the server's code and message.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> AnyResult<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(v);
        }
        Err(
            match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
                (Some(code), Some(msg)) => format!("{} {code}: {msg}", status.as_u16()),
                _ => format!("{} from {url}: {v}", status.as_u16()),
            },
        )
    }

    /// A plain-text GET (such as `/metrics`): the body of a 2xx answer.
    pub(crate) async fn get_text(&self, path: &str) -> AnyResult<String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.get(&url);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{} from {url}", resp.status().as_u16()));
        }
        resp.text()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))
    }
}

/// An error and its causes on one line: reqwest's own message alone ("error sending request")
/// hides whether the address, the certificate or the connection failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `s` with `/` and other reserved characters escaped, for a path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_reached_on_loopback() {
        assert_eq!(
            base_url("0.0.0.0:8443".parse().unwrap(), true),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            base_url("[::]:80".parse().unwrap(), false),
            "http://[::1]:80"
        );
        assert_eq!(
            base_url("10.0.0.2:1".parse().unwrap(), true),
            "https://10.0.0.2:1"
        );
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("d_01-x"), "d_01-x");
    }
}
