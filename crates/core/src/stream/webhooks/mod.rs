//! Webhooks for the operator event stream: an enterprise's HTTPS endpoint receives
//! the events of some of its products as signed POSTs, as a second way besides the stream's
//! sockets.
//!
//! A webhook is a consumer of the event hub like a stream login: its events are queued in the
//! store under the groups (product, `~` + webhook id), a subkey no login can name, so delivery is
//! at least once, keeps per-device order and survives restarts exactly as for the stream. One
//! task per enabled webhook takes what the hub hands it (up to `batch_max` events at once), POSTs
//! them as one JSON body signed with HMAC-SHA256 over `timestamp.body`, and acknowledges them on
//! a 2xx. Anything else (another status, a timeout, a connection error) is retried with
//! exponential back-off and jitter, up to `max_attempts`; then the batch's events become dead
//! letters (`webhook_dead_letters`), visible in the API until they are redriven (queued again)
//! or deleted. While a batch is retried, the webhook's later events wait (order over speed).
//!
//! SSRF defence: only `https://` URLs unless `allow_http`; unless `allow_private_addresses`, a
//! URL whose host is or resolves to a loopback, private, link-local or otherwise non-public
//! address is refused at creation, and the delivery client resolves names itself and connects
//! only to public addresses (so a name that later resolves elsewhere is refused too). No
//! redirects are followed and no proxy is used.
//!
//! Never here: HTTP routing or JSON error bodies (the API's `webhooks` module), SQL (the store).

use crate::access::access_keys::{KeySession, Scope};
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::stream::hub::{parse_kinds, Consumer, Delivery, GroupKey, MAX_PRODUCTS};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{DeadLetterRow, StoreError, WebhookRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most webhooks per enterprise (each holds a delivery task and a consumer).
pub const MAX_PER_ENTERPRISE: usize = 50;
/// Longest URL accepted.
const MAX_URL: usize = 2048;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// How long resolving a URL's host at creation may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Signature header scheme version.
pub const SIGNATURE_VERSION: &str = "v1";

/// Delivery settings (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    /// Attempts per batch before its events become dead letters (at least 1).
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long.
    pub backoff_base_ms: u64,
    /// No wait between attempts is longer than this.
    pub backoff_max_ms: u64,
    /// Whole-request timeout (connect, send, answer headers).
    pub timeout_ms: u64,
    /// Most events in one POST.
    pub batch_max: usize,
    /// Accept `http://` URLs.
    pub allow_http: bool,
    /// Accept URLs that reach loopback, private, link-local and other non-public addresses.
    pub allow_private_addresses: bool,
    /// Extra root certificates (PEM) trusted for webhook endpoints, besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            timeout_ms: 10_000,
            batch_max: 20,
            allow_http: false,
            allow_private_addresses: false,
            ca_pem: None,
        }
    }
}

/// A webhook as requested (`POST /v1/enterprise/webhooks`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    pub products: Vec<String>,
    /// Event kinds, as for a stream login; none means all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A webhook as shown (never its secret).
#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub webhook_id: String,
    pub url: String,
    pub products: Vec<String>,
    pub events: Vec<String>,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
}

/// A new webhook: the only time its signing secret is shown (no `Debug`, so it is never logged).
#[derive(Serialize)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

/// What to do with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterAct {
    /// Queue them again.
    Redrive,
    Delete,
}

/// A dead letter as shown.
#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub webhook_id: String,
    /// The `delivery_id` the event last had.
    pub delivery_id: i64,
    pub product_key: String,
    pub did: String,
    pub event_type: String,
    pub ts: i64,
    pub data: serde_json::Value,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: String,
    pub failed_at: i64,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(r: DeadLetterRow) -> DeadLetterView {
        DeadLetterView {
            data: serde_json::from_str(&r.body).unwrap_or_else(|_| serde_json::json!({})),
            id: r.id,
            webhook_id: r.webhook_id,
            delivery_id: r.event_id,
            product_key: r.product_key,
            did: r.did,
            event_type: r.kind,
            ts: r.ts,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            failed_at: r.failed_at,
        }
    }
}

/// How often a webhook held by its enterprise's suspension checks the store again (a
/// suspension or reinstatement made by this process wakes it at once).
const SUSPENDED_RECHECK: Duration = Duration::from_secs(5);

/// The subscription-group subkey of a webhook: `~` cannot start a login's subkey.
pub fn group_subkey(webhook_id: &str) -> String {
    format!("~{webhook_id}")
}

/// The signature header's value: `v1=` and lowercase hex HMAC-SHA256(secret, `{ts}.{body}`).
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!(
        "{SIGNATURE_VERSION}={}",
        hex::encode(m.finalize().into_bytes())
    )
}

/// How long to wait after failed attempt `attempt` (1-based): the exponential delay
/// `base * 2^(attempt-1)`, capped at `max`, of which the upper half is scaled by `jitter`
/// (0..1) ("equal jitter": never less than half the delay, never more than the cap).
pub fn backoff(attempt: u32, base_ms: u64, max_ms: u64, jitter: f64) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40))
        .min(max_ms);
    let half = exp / 2;
    let extra = ((exp - half) as f64 * jitter.clamp(0.0, 1.0)) as u64;
    Duration::from_millis(half + extra.min(exp - half))
}

/// Is `ip` an address a webhook may reach without `allow_private_addresses`? Refused: loopback,
/// unspecified, private (RFC 1918, unique local), link-local, shared (100.64/10), documentation,
/// benchmarking, multicast, broadcast and reserved ranges, IPv4-mapped/-compatible and 6to4/NAT64
/// forms of those, and Teredo.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let embedded =
                |a: u16, b: u16| Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
            // 6to4 (2002::/16) and NAT64 (64:ff9b::/96) carry an IPv4 address.
            if s[0] == 0x2002 {
                return is_public_v4(embedded(s[1], s[2]));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_public_v4(embedded(s[6], s[7]));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other ::/96
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240) // reserved
}

/// Resolves names for the delivery client and keeps only public addresses.
struct PublicOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The public addresses of `host`; an error when it has none.
async fn public_addrs(host: String) -> std::result::Result<reqwest::dns::Addrs, BoxError> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
    if public.is_empty() {
        return Err(format!(
            "`{host}` resolves to no public address (webhooks.allow_private_addresses is off)"
        )
        .into());
    }
    Ok(Box::new(public.into_iter()))
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(public_addrs(name.as_str().to_owned()))
    }
}

/// The webhooks' run-time state: the delivery client and the running delivery tasks.
pub(crate) struct Webhooks {
    client: reqwest::Client,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Webhooks {
    pub(crate) fn new(cfg: &WebhooksConfig) -> std::result::Result<Webhooks, String> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!cfg.allow_http)
            .user_agent(concat!("rampart-webhooks/", env!("CARGO_PKG_VERSION")));
        if !cfg.allow_private_addresses {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("webhooks.ca_file: {e}"))?;
            if certs.is_empty() {
                return Err("webhooks.ca_file holds no PEM certificate".into());
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Webhooks {
            client: b.build().map_err(|e| format!("webhook client: {e}"))?,
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self, webhook_id: &str) {
        if let Some(h) = self.running().remove(webhook_id) {
            h.abort();
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn view(r: &WebhookRow) -> WebhookView {
    WebhookView {
        webhook_id: r.webhook_id.clone(),
        url: r.url.clone(),
        products: words(&r.products),
        events: words(&r.kinds),
        disabled: r.disabled,
        created_by: r.created_by.clone(),
        created_at: r.created_at,
    }
}

fn require(k: &KeySession, s: Scope) -> Result<()> {
    Core::require_scope(k, s)
}

impl Core {
    fn webhooks(&self) -> Result<&Webhooks> {
        self.webhooks_state()
            .as_ref()
            .map_err(|e| Error::Internal(e.clone()))
    }

    /// Build the delivery client and start a delivery task for every enabled webhook (the
    /// server calls this once at start; a bad `ca_pem` is an error here).
    pub async fn start_webhooks(&self) -> Result<usize> {
        self.webhooks()?;
        let hooks = self.store().list_enabled_webhooks().await?;
        let n = hooks.len();
        for h in hooks {
            let id = h.webhook_id.clone();
            if let Err(e) = self.start_webhook(h).await {
                tracing::error!(webhook = %id, error = %e, "webhook not started");
            }
        }
        Ok(n)
    }

    /// Check a webhook URL: scheme, no credentials, and (unless allowed) a host that is and
    /// resolves only to public addresses. Returns the URL as normalised by the parser.
    pub async fn check_webhook_url(&self, raw: &str) -> Result<String> {
        let cfg = &self.config().webhooks;
        if raw.len() > MAX_URL {
            return Err(Error::Invalid(format!("`url` is longer than {MAX_URL}")));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| Error::Invalid(format!("`url` is not an absolute URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if cfg.allow_http => {}
            "http" => {
                return Err(Error::UrlRefused(
                    "only https:// URLs are accepted (webhooks.allow_http is off)".into(),
                ))
            }
            other => {
                return Err(Error::UrlRefused(format!(
                    "the scheme `{}` is not https",
                    other.chars().take(16).collect::<String>()
                )))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Invalid(
                "`url` must not carry credentials; the signature authenticates the server".into(),
            ));
        }
        if url.fragment().is_some() {
            return Err(Error::Invalid("`url` must not have a #fragment".into()));
        }
        let Some(host) = url.host() else {
            return Err(Error::Invalid("`url` has no host".into()));
        };
        if !cfg.allow_private_addresses {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<IpAddr> = match host {
                url::Host::Ipv4(a) => vec![IpAddr::V4(a)],
                url::Host::Ipv6(a) => vec![IpAddr::V6(a)],
                url::Host::Domain(d) => {
                    let found =
                        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((d, port)))
                            .await;
                    match found {
                        Ok(Ok(it)) => it.map(|a| a.ip()).collect(),
                        _ => {
                            return Err(Error::UrlRefused(format!(
                                "the host `{}` does not resolve",
                                d.chars().take(255).collect::<String>()
                            )))
                        }
                    }
                }
            };
            if addrs.is_empty() {
                return Err(Error::UrlRefused("the host resolves to nothing".into()));
            }
            if let Some(bad) = addrs.iter().find(|a| !is_public(**a)) {
                return Err(Error::UrlRefused(format!(
                    "the host is or resolves to {bad}, a loopback, private, link-local or \
                     otherwise non-public address (webhooks.allow_private_addresses is off)"
                )));
            }
        }
        Ok(url.to_string())
    }

    /// Create a webhook (scope `control`; every product one of the key's and still its
    /// enterprise's, else `NotFound("product")`). The secret is shown once. Audited
    /// (`webhook.create`).
    pub async fn create_webhook(&self, k: &KeySession, w: NewWebhook) -> Result<CreatedWebhook> {
        require(k, Scope::Control)?;
        self.webhooks()?;
        let products: Vec<String> = w
            .products
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if products.is_empty() || products.len() > MAX_PRODUCTS {
            return Err(Error::Invalid(format!(
                "products must list 1-{MAX_PRODUCTS} product keys"
            )));
        }
        for pk in &products {
            if !(k.products.contains(pk) && self.enterprise_owns(&k.enterprise_id, pk).await?) {
                return Err(Error::NotFound("product"));
            }
        }
        let kinds = parse_kinds(&w.events)?;
        let url = self.check_webhook_url(&w.url).await?;
        if self.store().list_webhooks(&k.enterprise_id).await?.len() >= MAX_PER_ENTERPRISE {
            return Err(Error::Conflict(format!(
                "an enterprise has at most {MAX_PER_ENTERPRISE} webhooks"
            )));
        }
        // 256 bits from the OS CSPRNG.
        let secret = format!("rwhs_{}", random_hex(32));
        let webhook_id = format!("rwh_{}", random_from(ID_ALPHABET, 20));
        let row = WebhookRow {
            secret_enc: self.key().seal(
                Place::new(col::WEBHOOK_SECRET, &webhook_id),
                secret.as_bytes(),
            ),
            webhook_id,
            enterprise_id: k.enterprise_id.clone(),
            url,
            products: products.join(" "),
            kinds: kinds.join(" "),
            sensitive_points: k.sensitive_points.join(" "),
            disabled: false,
            created_by: k.key_id.clone(),
            created_at: self.now_ms(),
        };
        self.store()
            .insert_webhook(&row)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("webhook id collision; retry".into()),
                e => e.into(),
            })?;
        let ev = self
            .webhook_event(k, action::WEBHOOK_CREATE, &row.webhook_id)
            .detail(format!(
                "url={} products={} events={}",
                row.url,
                products.join(","),
                kinds.join(",")
            ));
        self.audit(ev).await;
        self.start_webhook(row.clone()).await?;
        Ok(CreatedWebhook {
            webhook: view(&row),
            secret,
        })
    }

    fn webhook_event(&self, k: &KeySession, action: &str, webhook_id: &str) -> AuditEvent {
        AuditEvent::new(&k.actor(), action, "ok")
            .tenant(k.enterprise_id.clone())
            .source_ip(k.source_ip.clone())
            .target(format!(
                "webhook:{}",
                webhook_id.chars().take(64).collect::<String>()
            ))
    }

    /// The webhook if `k` may see it: its enterprise's, and every product one of the key's.
    /// Anything else is `NotFound("webhook")`, like an unknown id.
    async fn visible_webhook(&self, k: &KeySession, webhook_id: &str) -> Result<WebhookRow> {
        let row = if webhook_id.len() <= 64 {
            self.store().get_webhook(webhook_id).await?
        } else {
            None
        };
        row.filter(|r| key_sees(k, r))
            .ok_or(Error::NotFound("webhook"))
    }

    /// A page of the webhooks `k` may see (scope `read`).
    pub async fn list_webhooks(
        &self,
        k: &KeySession,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WebhookView>, i64)> {
        require(k, Scope::Read)?;
        let all: Vec<WebhookView> = self
            .store()
            .list_webhooks(&k.enterprise_id)
            .await?
            .iter()
            .filter(|r| key_sees(k, r))
            .map(view)
            .collect();
        let total = all.len() as i64;
        let page = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(0))
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        Ok((page, total))
    }

    /// One webhook (scope `read`).
    pub async fn get_webhook(&self, k: &KeySession, webhook_id: &str) -> Result<WebhookView> {
        require(k, Scope::Read)?;
        Ok(view(&self.visible_webhook(k, webhook_id).await?))
    }

    /// Disable (`on`) or enable a webhook (scope `control`). While disabled its events stay
    /// queued (within the event stream's retention) and are delivered once it is enabled.
    /// Audited (`webhook.disable`, `webhook.enable`).
    pub async fn set_webhook_disabled(
        &self,
        k: &KeySession,
        webhook_id: &str,
        on: bool,
    ) -> Result<WebhookView> {
        require(k, Scope::Control)?;
        let mut row = self.visible_webhook(k, webhook_id).await?;
        self.store()
            .set_webhook_disabled(&k.enterprise_id, webhook_id, on)
            .await?;
        row.disabled = on;
        if on {
            self.webhooks()?.stop(webhook_id);
        } else {
            self.start_webhook(row.clone()).await?;
        }
        let action = if on {
            action::WEBHOOK_DISABLE
        } else {
            action::WEBHOOK_ENABLE
        };
        self.audit(self.webhook_event(k, action, webhook_id)).await;
        Ok(view(&row))
    }

    /// Delete a webhook with its queued events and dead letters (scope `control`). Audited
    /// (`webhook.delete`).
    pub async fn delete_webhook(&self, k: &KeySession, webhook_id: &str) -> Result<()> {
        require(k, Scope::Control)?;
        let row = self.visible_webhook(k, webhook_id).await?;
        self.webhooks()?.stop(webhook_id);
        let sub = group_subkey(webhook_id);
        let groups: Vec<GroupKey> = words(&row.products)
            .into_iter()
            .map(|p| (p, sub.clone()))
            .collect();
        // First the hub stops queueing for the groups, then their rows go.
        self.forget_event_groups(groups).await;
        if !self
            .store()
            .delete_webhook(&k.enterprise_id, webhook_id, &sub)
            .await?
        {
            return Err(Error::NotFound("webhook"));
        }
        self.audit(self.webhook_event(k, action::WEBHOOK_DELETE, webhook_id))
            .await;
        Ok(())
    }

    /// A page of a webhook's dead letters, oldest first (scope `read`).
    pub async fn list_dead_letters(
        &self,
        k: &KeySession,
        webhook_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeadLetterView>, i64)> {
        require(k, Scope::Read)?;
        self.visible_webhook(k, webhook_id).await?;
        let (rows, total) = self
            .store()
            .list_dead_letters(webhook_id, offset, limit)
            .await?;
        Ok((rows.into_iter().map(DeadLetterView::from).collect(), total))
    }

    /// Redrive (queue again, behind what is queued, in their order) or delete a webhook's dead
    /// letters: one by id, or all (scope `control`). Returns how many; one unknown id is
    /// `NotFound("dead letter")`. Audited (`webhook.redrive`, `webhook.dead_letters_delete`).
    pub async fn act_on_dead_letters(
        &self,
        k: &KeySession,
        webhook_id: &str,
        id: Option<i64>,
        act: LetterAct,
    ) -> Result<u64> {
        require(k, Scope::Control)?;
        let row = self.visible_webhook(k, webhook_id).await?;
        let sub = group_subkey(webhook_id);
        let n = match act {
            LetterAct::Redrive => {
                self.store()
                    .redrive_dead_letters(webhook_id, id, &sub, self.now_ms())
                    .await?
            }
            LetterAct::Delete => self.store().delete_dead_letters(webhook_id, id).await?,
        };
        if id.is_some() && n == 0 {
            return Err(Error::NotFound("dead letter"));
        }
        if act == LetterAct::Redrive {
            let groups = words(&row.products)
                .into_iter()
                .map(|p| (p, sub.clone()))
                .collect();
            self.poke_event_groups(groups);
        }
        let action = match act {
            LetterAct::Redrive => action::WEBHOOK_REDRIVE,
            LetterAct::Delete => action::WEBHOOK_DEAD_LETTERS_DELETE,
        };
        let one = id.map(|i| format!(" (id {i})")).unwrap_or_default();
        let ev = self
            .webhook_event(k, action, webhook_id)
            .detail(format!("{n} dead letters{one}"));
        self.audit(ev).await;
        Ok(n)
    }
}

/// Does `k` see webhook `r`? Its enterprise's, with every product one of the key's.
fn key_sees(k: &KeySession, r: &WebhookRow) -> bool {
    r.enterprise_id == k.enterprise_id && words(&r.products).iter().all(|p| k.products.contains(p))
}

mod delivery;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_cap_with_equal_jitter() {
        // jitter 0: half the exponential delay; jitter 1: all of it.
        assert_eq!(backoff(1, 1000, 60_000, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1000, 60_000, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(3, 1000, 60_000, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff(3, 1000, 60_000, 0.5), Duration::from_millis(3000));
        // capped, never more than the cap whatever the attempt
        assert_eq!(
            backoff(10, 1000, 60_000, 1.0),
            Duration::from_millis(60_000)
        );
        assert_eq!(
            backoff(200, 1000, 60_000, 1.0),
            Duration::from_millis(60_000)
        );
        assert_eq!(
            backoff(200, 1000, 60_000, 0.0),
            Duration::from_millis(30_000)
        );
        // out-of-range jitter is clamped
        assert_eq!(backoff(2, 10, 1000, 7.0), Duration::from_millis(20));
        assert_eq!(backoff(0, 10, 1000, 0.0), Duration::from_millis(5));
    }

    #[test]
    fn public_and_non_public_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
            "2001:0:4136:e378::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} should not be public");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a} should be public");
        }
    }

    /// The worked example of `docs/enterprise-api.md` ("Verifying a webhook"); the expected value
    /// was computed with `printf '%s' '1764100000000.{...}' | openssl dgst -sha256 -hmac SECRET`.
    #[test]
    fn signature_worked_example() {
        let body = br#"{"webhook_id":"rwh_example","events":[]}"#;
        assert_eq!(
            sign(b"rwhs_example_secret", 1764100000000, body),
            "v1=ac6aa730c299f55aa89c303c4549ab9d523e254be93411dfaa3004cdf9678982"
        );
    }

    #[test]
    fn subkeys_of_webhooks_are_no_login_subkeys() {
        assert!(crate::stream::hub::parse_subkey(&group_subkey("rwh_abc")).is_err());
    }
}
