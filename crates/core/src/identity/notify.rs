//! Messages to end users (activation and password-reset codes) through a [`Notifier`]:
//! a local outbox directory (the default: one JSON file per message), an SMS provider's HTTP endpoint,
//! or SMTP. [`Router`] sends e-mail and SMS recipients through their own notifier.
//!
//! Codes are secrets: a [`Notice`] prints `***` for its code, and failures are logged without it.

use crate::secret::{random_hex, write_private, Secret};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How a message reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A code that activates a new account.
    Activate,
    /// A code that sets a new password.
    PasswordReset,
    /// Someone tried to register an address that already has an account (no code).
    AlreadyRegistered,
    /// A developer was invited to an enterprise (no code).
    EnterpriseInvite,
    /// A device was shared with an address that has no account yet (no code).
    ShareInvite,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Activate => "activate",
            Purpose::PasswordReset => "password_reset",
            Purpose::AlreadyRegistered => "already_registered",
            Purpose::EnterpriseInvite => "enterprise_invite",
            Purpose::ShareInvite => "share_invite",
        }
    }
}

/// One message to one recipient.
#[derive(Clone, Serialize)]
pub struct Notice {
    pub to: String,
    pub channel: Channel,
    pub purpose: Purpose,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_code"
    )]
    pub code: Option<Secret>,
    pub created_at: i64,
    /// How long the code stays valid, for the message's text (`accounts.code_ttl_secs`).
    #[serde(skip)]
    pub valid_for_ms: i64,
}

fn expose_code<S: serde::Serializer>(c: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(c.expose()),
        None => s.serialize_none(),
    }
}

impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("channel", &self.channel)
            .field("purpose", &self.purpose)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Notice {
    pub fn new(to: &str, channel: Channel, purpose: Purpose, code: Option<Secret>) -> Notice {
        Notice {
            to: to.to_owned(),
            channel,
            purpose,
            code,
            // stamped by `Core::notify`, from the core's clock
            created_at: 0,
            valid_for_ms: crate::identity::accounts::CODE_TTL_MS,
        }
    }

    /// The same notice, saying its code is valid for `ms`.
    pub fn valid_for(mut self, ms: i64) -> Notice {
        self.valid_for_ms = ms;
        self
    }

    /// The code's validity in words: "10 minutes", "1 hour", "90 seconds".
    fn validity(&self) -> String {
        let secs = (self.valid_for_ms / 1000).max(1);
        let (n, unit) = match secs {
            s if s % 3600 == 0 => (s / 3600, "hour"),
            s if s % 60 == 0 => (s / 60, "minute"),
            s => (s, "second"),
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    }

    /// A plain-text rendering (subject, body) for e-mail and SMS.
    pub fn text(&self) -> (String, String) {
        let code = self.code.as_ref().map(|c| c.expose()).unwrap_or("");
        let valid = self.validity();
        match self.purpose {
            Purpose::Activate => (
                "Your Rampart activation code".into(),
                format!("Your activation code is {code}. It expires in {valid}."),
            ),
            Purpose::PasswordReset => (
                "Your Rampart password reset code".into(),
                format!(
                    "Your password reset code is {code}. It expires in {valid}. \
                     If you did not ask for it, ignore this message."
                ),
            ),
            Purpose::AlreadyRegistered => (
                "Rampart sign-up attempt".into(),
                "Someone tried to create an account with this address, which already has one. \
                 If it was you, sign in or reset your password."
                    .into(),
            ),
            Purpose::EnterpriseInvite => (
                "You are invited to an enterprise on Rampart".into(),
                "A Rampart enterprise invited this address to join it. Sign in as a developer (or sign \
                 up with this address) and accept the invitation under your invitations."
                    .into(),
            ),
            Purpose::ShareInvite => (
                "A device was shared with you on Rampart".into(),
                "A Rampart user shared a device with this address. Sign up with this address in \
                 their app to see the offer among your shares and accept it."
                    .into(),
            ),
        }
    }
}

/// A boxed send future.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Delivers notices. Implementations must not log the code.
pub trait Notifier: Send + Sync + 'static {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a>;

    /// Remove every kept copy of what was sent to `recipient` (its account is being erased).
    /// Notifiers that keep nothing, having handed the message on, do nothing.
    fn forget<'a>(&'a self, _recipient: &'a str) -> SendFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// Writes each notice as `DIR/{created_at}-{purpose}-{random}.json` (mode 0600).
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }
}

impl Notifier for Outbox {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec_pretty(notice).map_err(|e| e.to_string())?;
            let path = self.dir.join(format!(
                "{}-{}-{}.json",
                notice.created_at,
                notice.purpose.as_str(),
                random_hex(4)
            ));
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                }
                // Written under a temporary name and renamed, so a reader never sees half a file.
                let tmp = path.with_extension("tmp");
                write_private(&tmp, &body)?;
                std::fs::rename(&tmp, &path)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("outbox {}: {e}", self.dir.display()))
        })
    }

    fn forget<'a>(&'a self, recipient: &'a str) -> SendFuture<'a> {
        #[derive(serde::Deserialize)]
        struct To {
            to: String,
        }
        let dir = self.dir.clone();
        let recipient = recipient.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let path = entry?.path();
                    let Ok(bytes) = std::fs::read(&path) else {
                        continue;
                    };
                    if serde_json::from_slice::<To>(&bytes).is_ok_and(|m| m.to == recipient) {
                        std::fs::remove_file(&path)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("outbox {}: {e}", self.dir.display()))
        })
    }
}

/// POSTs each notice as JSON (`{"to", "channel", "purpose", "code", "text", "created_at"}`) to an
/// SMS provider's HTTP endpoint (configured as `notify.sms = "webhook"`), with an optional bearer token.
pub struct HttpSms {
    url: String,
    token: Option<Secret>,
    client: reqwest::Client,
}

impl HttpSms {
    pub fn new(url: String, token: Option<Secret>) -> Result<HttpSms, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("notify webhook url `{url}` must be http(s)://"));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpSms { url, token, client })
    }
}

impl Notifier for HttpSms {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(async move {
            let mut body = serde_json::to_value(notice).map_err(|e| e.to_string())?;
            body["text"] = notice.text().1.into();
            let mut rb = self.client.post(&self.url).json(&body);
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t.expose());
            }
            let resp = rb.send().await.map_err(|e| format!("webhook: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("webhook answered {}", resp.status()));
            }
            Ok(())
        })
    }
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// STARTTLS (true) or implicit TLS (false).
    pub starttls: bool,
    /// No TLS at all (ignores `starttls`); refused unless `host` is a loopback host.
    pub plaintext: bool,
}

/// Whether `host` names this machine: `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Sends e-mail through an SMTP relay with `lettre` (rustls).
pub struct Smtp {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Smtp {
    pub fn new(s: &SmtpSettings) -> Result<Smtp, String> {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::{AsyncSmtpTransport, Tokio1Executor};
        let from = s
            .from
            .parse()
            .map_err(|e| format!("notify smtp from `{}`: {e}", s.from))?;
        let builder = if s.plaintext {
            if !is_loopback_host(&s.host) {
                return Err(format!(
                    "notify smtp host `{}`: plaintext SMTP is allowed only to a loopback host",
                    s.host
                ));
            }
            Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &s.host,
            ))
        } else if s.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
        }
        .map_err(|e| format!("notify smtp host `{}`: {e}", s.host))?
        .port(s.port)
        .timeout(Some(Duration::from_secs(15)));
        let builder = match (&s.username, &s.password) {
            (Some(u), Some(p)) => {
                builder.credentials(Credentials::new(u.clone(), p.expose().to_owned()))
            }
            _ => builder,
        };
        Ok(Smtp {
            transport: builder.build(),
            from,
        })
    }
}

impl Notifier for Smtp {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(async move {
            use lettre::AsyncTransport;
            let to = notice
                .to
                .parse()
                .map_err(|e| format!("smtp recipient: {e}"))?;
            let (subject, body) = notice.text();
            // A Message-ID under the sender's domain (RFC 5322 §3.6.4): lettre would otherwise
            // leave it out, or name this machine's host name in it.
            let message_id = format!("<{}@{}>", random_hex(16), self.from.email.domain());
            let msg = lettre::Message::builder()
                .message_id(Some(message_id))
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| format!("smtp message: {e}"))?;
            self.transport
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| format!("smtp: {e}"))
        })
    }
}

/// Sends e-mail and SMS through their own notifiers.
#[derive(Clone)]
pub struct Router {
    pub email: Arc<dyn Notifier>,
    pub sms: Arc<dyn Notifier>,
}

impl Router {
    /// Both channels into one outbox directory.
    pub fn outbox(dir: PathBuf) -> Router {
        let o: Arc<dyn Notifier> = Arc::new(Outbox::new(dir));
        Router {
            email: o.clone(),
            sms: o,
        }
    }
}

impl Notifier for Router {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        match notice.channel {
            Channel::Email => self.email.send(notice),
            Channel::Sms => self.sms.send(notice),
        }
    }

    fn forget<'a>(&'a self, recipient: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            self.email.forget(recipient).await?;
            self.sms.forget(recipient).await
        })
    }
}

/// The notifier of a `Core` nobody configured: drops messages with a warning.
pub(crate) struct Nowhere;

impl Notifier for Nowhere {
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::warn!(
                purpose = notice.purpose.as_str(),
                "no notifier configured; message dropped"
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_writes_private_json() {
        let dir = tempfile::tempdir().unwrap();
        let out = Outbox::new(dir.path().join("outbox"));
        let n = Notice::new(
            "a@b.example",
            Channel::Email,
            Purpose::Activate,
            Some(Secret::new("123456".into())),
        );
        assert!(!format!("{n:?}").contains("123456"));
        out.send(&n).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(v["to"], "a@b.example");
        assert_eq!(v["channel"], "email");
        assert_eq!(v["purpose"], "activate");
        assert_eq!(v["code"], "123456");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }

    /// A one-request HTTP server: returns the request it received (head and body) after answering
    /// with `status`.
    async fn fake_http(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                assert!(n > 0, "connection closed early");
            }
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).to_string()
        });
        (url, task)
    }

    #[tokio::test]
    async fn webhook_posts_json_with_the_token() {
        let (url, req) = fake_http(200).await;
        let hook = HttpSms::new(url, Some(Secret::new("hook-token".into()))).unwrap();
        let n = Notice::new(
            "+15551234567",
            Channel::Sms,
            Purpose::PasswordReset,
            Some(Secret::new("654321".into())),
        );
        hook.send(&n).await.unwrap();
        let req = req.await.unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /sms "), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("authorization: bearer hook-token"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["to"], "+15551234567");
        assert_eq!(v["channel"], "sms");
        assert_eq!(v["purpose"], "password_reset");
        assert_eq!(v["code"], "654321");
        assert!(v["text"].as_str().unwrap().contains("654321"));

        // a provider error is reported, without the code
        let (url, req) = fake_http(500).await;
        let err = HttpSms::new(url, None).unwrap().send(&n).await.unwrap_err();
        req.await.unwrap();
        assert!(err.contains("500") && !err.contains("654321"), "{err}");
    }

    #[tokio::test]
    async fn router_sends_by_channel() {
        let dir = tempfile::tempdir().unwrap();
        let (url, req) = fake_http(200).await;
        let r = Router {
            email: Arc::new(Outbox::new(dir.path().to_path_buf())),
            sms: Arc::new(HttpSms::new(url, None).unwrap()),
        };
        r.send(&Notice::new(
            "a@b.example",
            Channel::Email,
            Purpose::Activate,
            None,
        ))
        .await
        .unwrap();
        r.send(&Notice::new(
            "+15551234567",
            Channel::Sms,
            Purpose::Activate,
            None,
        ))
        .await
        .unwrap();
        assert!(req.await.unwrap().contains("+15551234567"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn smtp_and_webhook_settings_are_checked() {
        assert!(HttpSms::new("ftp://x".into(), None).is_err());
        assert!(HttpSms::new("https://sms.example/hook".into(), None).is_ok());
        let s = SmtpSettings {
            host: "smtp.example".into(),
            port: 587,
            from: "not an address".into(),
            username: None,
            password: None,
            starttls: true,
            plaintext: false,
        };
        assert!(Smtp::new(&s).is_err());
        let s = SmtpSettings {
            from: "Rampart <noreply@example.com>".into(),
            ..s
        };
        assert!(Smtp::new(&s).is_ok());
        // plaintext only to this machine
        let plain = SmtpSettings {
            plaintext: true,
            ..s.clone()
        };
        let e = Smtp::new(&plain).err().unwrap();
        assert!(e.contains("loopback"), "{e}");
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            let p = SmtpSettings {
                host: host.into(),
                ..plain.clone()
            };
            assert!(Smtp::new(&p).is_ok(), "{host}");
        }
    }

    #[test]
    fn code_validity_is_in_the_text() {
        let n = Notice::new(
            "a@x.io",
            Channel::Email,
            Purpose::Activate,
            Some(Secret::new("123456".into())),
        );
        assert!(
            n.text().1.contains("123456. It expires in 10 minutes."),
            "{:?}",
            n.text()
        );
        for (ms, words) in [
            (3_600_000, "1 hour"),
            (90_000, "90 seconds"),
            (60_000, "1 minute"),
        ] {
            let t = n.clone().valid_for(ms).text().1;
            assert!(t.contains(&format!("expires in {words}.")), "{t}");
        }
    }
}
