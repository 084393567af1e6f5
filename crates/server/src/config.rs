//! Typed configuration: defaults, then a TOML file (`--config`), then `RAMPART_*` environment
//! variables (`__` separates sections: `RAMPART_MQTT__TLS_LISTEN`), then command-line flags.
//! Unknown keys are refused everywhere. `docs/config.md` lists every option.
//!
//! This module only reads and checks values; it never opens the store, binds a socket or keeps
//! global state, so any number of configurations can live in one process.

use rampart_core::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration value that is invalid, or a file it names that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError(s)
    }
}

impl From<&str> for ConfigError {
    fn from(s: &str) -> Self {
        ConfigError(s.to_owned())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (store, keys, certificates, listeners.json).
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub mqtt: MqttConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub log: LogConfig,
    pub commands: CommandConfig,
    pub notify: NotifyConfig,
    pub accounts: AccountsConfig,
    /// Developer-account token lifetimes (`docs/developers.md`).
    pub developers: DevelopersConfig,
    /// Lifetimes of the OAuth2 authorisation server's codes, tokens and grants (`docs/oauth.md`).
    pub oauth: OAuthConfig,
    pub oidc: OidcConfig,
    pub events: EventsConfig,
    /// Webhooks of the event stream (`docs/enterprise-api.md`, "Webhooks").
    pub webhooks: WebhooksConfig,
    /// API rates, access-key quotas and code limits (`docs/api.md`, "Limits").
    pub limits: rampart_core::limits::api::LimitsConfig,
    /// Uploaded files: size caps (they are kept in `DATA/uploads` by content hash).
    pub uploads: UploadsConfig,
    /// Firmware updates (`docs/ota.md`).
    pub ota: OtaConfig,
    /// Several nodes serving one fleet over NATS and PostgreSQL (`docs/cluster.md`).
    pub cluster: ClusterConfig,
    /// The bootstrap admin token, from `RAMPART_ADMIN_TOKEN` only (never from the file, never
    /// printed by `config generate`); without it the first start generates one.
    #[serde(skip)]
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Largest allowlist file, bytes.
    pub max_allowlist_bytes: usize,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            max_allowlist_bytes: rampart_core::device::uploads::UploadsConfig::default()
                .max_allowlist_bytes,
        }
    }
}

/// Firmware updates: image size cap, manifest lifetime, download URL, the campaign sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtaConfig {
    /// Largest firmware image, bytes.
    pub max_firmware_bytes: u64,
    /// How long a manifest and its download URL stay good, seconds.
    pub url_ttl_secs: u64,
    /// Prefixed to the download path in manifests (e.g. `https://ota.example.com:8443`); empty:
    /// the manifest carries the path and devices resolve it against the API address they use.
    pub download_base_url: String,
    /// How often campaigns are swept (device deadlines, stage advancement), milliseconds.
    pub sweep_interval_ms: u64,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            max_firmware_bytes: rampart_core::device::uploads::UploadsConfig::default()
                .max_firmware_bytes,
            url_ttl_secs: rampart_core::ota::OtaConfig::default().url_ttl_secs,
            download_base_url: String::new(),
            sweep_interval_ms: 5_000,
        }
    }
}

/// Joining a cluster: on when `nats_url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `nats://host:port` of a NATS server with JetStream; empty: a single node.
    pub nats_url: String,
    /// This node's name (`[A-Za-z0-9_-]`, unique among running nodes); empty: `node-` and 8
    /// random hex digits, new at every start.
    pub node_id: String,
    /// The region this node serves (shown by `/healthz`).
    pub region: String,
    /// Prefix of the cluster's NATS subjects and JetStream buckets (`[A-Za-z0-9_-]`).
    pub subject_prefix: String,
    /// A node missing its heartbeats this long counts as dead, its devices as offline, seconds.
    pub liveness_secs: u64,
    /// Replicas of the cluster's JetStream buckets (at most the NATS cluster's size).
    pub replicas: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            node_id: String::new(),
            region: String::new(),
            subject_prefix: "rampart".into(),
            liveness_secs: 10,
            replicas: 1,
        }
    }
}

impl Config {
    /// The cluster to join, checked: `None` on a single node. Cluster mode needs a PostgreSQL
    /// store (every node must see the same state), names made of subject-safe characters, and
    /// a liveness of 2 to 60 seconds.
    pub fn cluster(&self) -> Result<Option<rampart_core::cluster::ClusterConfig>, ConfigError> {
        let c = &self.cluster;
        if c.nats_url.is_empty() {
            return Ok(None);
        }
        if !self.store.url.starts_with("postgres://")
            && !self.store.url.starts_with("postgresql://")
        {
            return Err(ConfigError(format!(
                "cluster.nats_url is set but the store is {}: a cluster needs a PostgreSQL store \
                 shared by every node (store.url = \"postgres://...\"); see docs/cluster.md",
                if self.store.url.is_empty() {
                    "SQLite in the data directory".to_owned()
                } else {
                    format!("`{}`", self.store.url.split("://").next().unwrap_or(""))
                }
            )));
        }
        if !c.nats_url.starts_with("nats://") && !c.nats_url.starts_with("tls://") {
            return Err(ConfigError(format!(
                "cluster.nats_url `{}`: must start with nats:// or tls://",
                c.nats_url
            )));
        }
        let node_id = if c.node_id.is_empty() {
            rampart_core::cluster::generated_node_id()
        } else {
            c.node_id.clone()
        };
        for (key, v) in [
            ("cluster.node_id", &node_id),
            ("cluster.subject_prefix", &c.subject_prefix),
        ] {
            if !rampart_core::cluster::valid_name(v) {
                return Err(ConfigError(format!(
                    "{key} = `{v}`: must be 1-64 characters of [A-Za-z0-9_-]"
                )));
            }
        }
        if !(2..=60).contains(&c.liveness_secs) {
            return Err(ConfigError(format!(
                "cluster.liveness_secs = {}: must be 2 to 60 seconds",
                c.liveness_secs
            )));
        }
        if !(1..=5).contains(&c.replicas) {
            return Err(ConfigError(format!(
                "cluster.replicas = {}: must be 1 to 5",
                c.replicas
            )));
        }
        Ok(Some(rampart_core::cluster::ClusterConfig {
            nats_url: c.nats_url.clone(),
            node_id,
            region: c.region.clone(),
            subject_prefix: c.subject_prefix.clone(),
            liveness: std::time::Duration::from_secs(c.liveness_secs),
            replicas: c.replicas,
            command_timeout: std::time::Duration::from_millis(self.commands.timeout_ms),
        }))
    }
}

/// Login with third-party OpenID Connect providers (`docs/oauth.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// How long a login may take between its start and the provider's callback.
    pub state_ttl_secs: u32,
    /// Providers by name (the name appears in `/v1/oidc/{name}/start`).
    pub providers: std::collections::BTreeMap<String, OidcProviderConfig>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            state_ttl_secs: secs(rampart_core::federation::oidc::STATE_TTL_MS),
            providers: Default::default(),
        }
    }
}

/// Milliseconds as whole seconds (for the defaults).
fn secs(ms: i64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// Milliseconds as whole days (for the defaults).
fn days(ms: i64) -> u32 {
    u32::try_from(ms / 86_400_000).unwrap_or(u32::MAX)
}

/// `value` (in `unit_ms`) when it lies in `lo..=hi`; otherwise an error naming the key.
fn lifetime(
    key: &str,
    value: u32,
    lo: u32,
    hi: u32,
    unit: &str,
    unit_ms: i64,
) -> Result<i64, String> {
    if (lo..=hi).contains(&value) {
        Ok(i64::from(value) * unit_ms)
    } else {
        Err(format!("{key} = {value}: must be {lo} to {hi} {unit}"))
    }
}

const SEC: i64 = 1000;
const DAY: i64 = 86_400_000;

/// Developer accounts' token lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevelopersConfig {
    /// Lifetime of a developer's `rdt_` access token.
    pub access_ttl_secs: u32,
    /// Lifetime of a developer's `rdr_` refresh token.
    pub refresh_ttl_days: u32,
}

impl Default for DevelopersConfig {
    fn default() -> Self {
        let d = rampart_core::Lifetimes::default();
        DevelopersConfig {
            access_ttl_secs: secs(d.developer_access_ms),
            refresh_ttl_days: days(d.developer_refresh_ms),
        }
    }
}

/// The OAuth2 authorisation server's lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Lifetime of an authorisation code (RFC 6749 recommends at most 10 minutes).
    pub code_ttl_secs: u32,
    /// Lifetime of a third party's `roa_` access token.
    pub access_ttl_secs: u32,
    /// Lifetime of a third party's `ror_` refresh token; each refresh issues a new one.
    pub refresh_ttl_days: u32,
    /// Absolute lifetime of a grant: then the client must ask the user again.
    pub grant_ttl_days: u32,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        let d = rampart_core::Lifetimes::default();
        OAuthConfig {
            code_ttl_secs: secs(d.oauth_code_ms),
            access_ttl_secs: secs(d.oauth_access_ms),
            refresh_ttl_days: days(d.oauth_refresh_ms),
            grant_ttl_days: days(d.oauth_grant_ms),
        }
    }
}

/// Every lifetime, checked: (end-user access, end-user refresh, the others).
pub struct CheckedLifetimes {
    pub access_ms: i64,
    pub refresh_ms: i64,
    pub other: rampart_core::Lifetimes,
}

impl Config {
    /// The lifetimes of tokens, codes and login states, each within its documented range.
    pub fn lifetimes(&self) -> Result<CheckedLifetimes, ConfigError> {
        let (a, d, o) = (&self.accounts, &self.developers, &self.oauth);
        let checked = CheckedLifetimes {
            access_ms: lifetime(
                "accounts.access_ttl_secs",
                a.access_ttl_secs,
                1,
                86_400,
                "seconds",
                SEC,
            )?,
            refresh_ms: lifetime(
                "accounts.refresh_ttl_days",
                a.refresh_ttl_days,
                1,
                365,
                "days",
                DAY,
            )?,
            other: rampart_core::Lifetimes {
                code_ms: lifetime(
                    "accounts.code_ttl_secs",
                    a.code_ttl_secs,
                    60,
                    86_400,
                    "seconds",
                    SEC,
                )?,
                bind_token_ms: lifetime(
                    "accounts.bind_token_ttl_secs",
                    a.bind_token_ttl_secs,
                    60,
                    86_400,
                    "seconds",
                    SEC,
                )?,
                developer_access_ms: lifetime(
                    "developers.access_ttl_secs",
                    d.access_ttl_secs,
                    1,
                    86_400,
                    "seconds",
                    SEC,
                )?,
                developer_refresh_ms: lifetime(
                    "developers.refresh_ttl_days",
                    d.refresh_ttl_days,
                    1,
                    365,
                    "days",
                    DAY,
                )?,
                oauth_code_ms: lifetime(
                    "oauth.code_ttl_secs",
                    o.code_ttl_secs,
                    10,
                    600,
                    "seconds",
                    SEC,
                )?,
                oauth_access_ms: lifetime(
                    "oauth.access_ttl_secs",
                    o.access_ttl_secs,
                    1,
                    86_400,
                    "seconds",
                    SEC,
                )?,
                oauth_refresh_ms: lifetime(
                    "oauth.refresh_ttl_days",
                    o.refresh_ttl_days,
                    1,
                    365,
                    "days",
                    DAY,
                )?,
                oauth_grant_ms: lifetime(
                    "oauth.grant_ttl_days",
                    o.grant_ttl_days,
                    1,
                    3_650,
                    "days",
                    DAY,
                )?,
                oidc_state_ms: lifetime(
                    "oidc.state_ttl_secs",
                    self.oidc.state_ttl_secs,
                    60,
                    3_600,
                    "seconds",
                    SEC,
                )?,
            },
        };
        if o.refresh_ttl_days > o.grant_ttl_days {
            return Err(format!(
                "oauth.refresh_ttl_days = {} is longer than oauth.grant_ttl_days = {}",
                o.refresh_ttl_days, o.grant_ttl_days
            )
            .into());
        }
        Ok(checked)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcProviderConfig {
    /// Issuer URL (https; http only for loopback); discovery is `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// A file (mode 0600) holding the client secret instead.
    pub client_secret_file: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// Our callback as registered at the provider; empty: `https://HOST/v1/oidc/NAME/callback`
    /// from the request's Host header.
    pub redirect_uri: String,
    /// On a subject's first login, link it to an existing user with the same e-mail when the
    /// provider says `email_verified: true`.
    pub link_verified_email: bool,
}

impl Default for OidcProviderConfig {
    fn default() -> Self {
        OidcProviderConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            scopes: vec!["email".into()],
            redirect_uri: String::new(),
            link_verified_email: false,
        }
    }
}

impl OidcConfig {
    /// The providers for the core, with their secrets read.
    pub fn providers(
        &self,
    ) -> Result<Vec<rampart_core::federation::oidc::ProviderConfig>, ConfigError> {
        let mut out = Vec::new();
        for (name, p) in &self.providers {
            let secret = if p.client_secret_file.is_empty() {
                p.client_secret.clone()
            } else {
                let path = Path::new(&p.client_secret_file);
                rampart_core::secret::check_private(path).map_err(|e| e.to_string())?;
                std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", p.client_secret_file))?
                    .trim()
                    .to_owned()
            };
            if secret.is_empty() {
                return Err(format!("oidc.providers.{name}: client_secret is empty").into());
            }
            out.push(rampart_core::federation::oidc::ProviderConfig {
                name: name.clone(),
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
                client_secret: Secret::new(secret),
                scopes: p.scopes.clone(),
                redirect_uri: p.redirect_uri.clone(),
                link_verified_email: p.link_verified_email,
            });
        }
        Ok(out)
    }
}

/// End-user sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Access-token lifetime.
    pub access_ttl_secs: u32,
    /// Refresh-token lifetime.
    pub refresh_ttl_days: u32,
    /// Lifetime of activation and password-reset codes (end users and developers).
    pub code_ttl_secs: u32,
    /// Lifetime of a one-time bind token.
    pub bind_token_ttl_secs: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        let d = rampart_core::Lifetimes::default();
        AccountsConfig {
            access_ttl_secs: secs(rampart_core::identity::accounts::ACCESS_TTL_MS),
            refresh_ttl_days: days(rampart_core::identity::accounts::REFRESH_TTL_MS),
            code_ttl_secs: secs(d.code_ms),
            bind_token_ttl_secs: secs(d.bind_token_ms),
        }
    }
}

/// Where activation and password-reset codes go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// E-mail recipients: `outbox` or `smtp`.
    pub email: String,
    /// Phone recipients: `outbox` or `webhook`.
    pub sms: String,
    /// Outbox directory; empty means `DATA/outbox`.
    pub outbox_dir: String,
    pub webhook: WebhookConfig,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The SMS provider's endpoint; each message is POSTed to it as JSON.
    pub url: String,
    /// Optional bearer token sent with each POST.
    pub token: String,
    /// A file (mode 0600) holding the token instead.
    pub token_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// Sender, e.g. `Rampart <noreply@example.com>`.
    pub from: String,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
    /// A file (mode 0600) holding the password instead.
    pub password_file: String,
    /// STARTTLS on `port` (true) or implicit TLS (false).
    pub starttls: bool,
    /// No TLS at all; allowed only to a loopback host (a local mail server that relays).
    pub plaintext: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; empty means `sqlite://DATA/rampart.db`.
    pub url: String,
    /// SQLite: page cache per reading connection (there are up to 8), KiB.
    pub sqlite_cache_kib: u32,
    /// SQLite: page cache of the report writer's connection, KiB.
    pub sqlite_writer_cache_kib: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let o = rampart_store::StoreOptions::default();
        StoreConfig {
            url: String::new(),
            sqlite_cache_kib: o.sqlite_cache_kib,
            sqlite_writer_cache_kib: o.sqlite_writer_cache_kib,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// MQTT over TLS listen address; empty disables it.
    pub tls_listen: String,
    /// Plain-TCP MQTT listen address; empty (the default) disables it.
    pub listen: String,
    pub max_packet_size: usize,
    pub connect_timeout_secs: u64,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    /// Longest topic name or filter, bytes.
    pub max_topic_len: usize,
    /// Most inbound QoS 1/2 publishes unacknowledged per connection (the MQTT 5 receive maximum).
    pub max_inflight: u16,
    /// Longest a persistent session outlives its connection (MQTT 3.1.1 clean-session-0 sessions get
    /// exactly this; MQTT 5 session expiry is capped at it).
    pub max_session_expiry_secs: u32,
    /// Milliseconds a plain-TCP session must be idle (nothing buffered or in flight) before it
    /// waits in the idle pool off the runtime, costing far less memory; 0 keeps every session a task.
    pub park_idle_after_ms: u64,
    /// The plain-TCP listener also takes plain MQTT beside the secure-session layer (labs and
    /// benchmarks; a warning is logged at start). Off, it speaks only the secure-session layer.
    pub allow_unencrypted: bool,
    /// Connect rates per IP and per device, the reconnect-storm ban, the report-abuse rule.
    pub limits: rampart_core::limits::connect::MqttLimitsConfig,
    /// Key rotation of secure sessions (Noise) on the plain-TCP listener.
    pub secure_session: SecureSessionConfig,
}

/// When the server rotates its sending key in a secure session (`docs/protocol.md`, "Secure
/// session"); a device rotates its own whenever it likes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecureSessionConfig {
    /// Messages sent with one key; 0: never by count.
    pub rekey_messages: u64,
    /// Seconds one key is used (checked when the next message goes out); 0: never by age.
    pub rekey_secs: u64,
}

impl Default for SecureSessionConfig {
    fn default() -> Self {
        SecureSessionConfig {
            rekey_messages: 65_536,
            rekey_secs: 3_600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Plain-HTTP listener serving only `GET /metrics` without authentication, for a Prometheus
    /// scraper on a private address; empty (the default) disables it.
    pub metrics_listen: String,
    /// Serve HTTPS (true) or plain HTTP (only behind a TLS-terminating proxy).
    pub tls: bool,
    /// Largest request body in bytes (413 `PAYLOAD_TOO_LARGE` above it).
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    pub body_read_timeout_secs: u64,
    /// Open connections per source address (0: no cap).
    pub max_connections_per_ip: usize,
    /// Speak HTTP/2 (ALPN `h2` on HTTPS, prior knowledge on plain HTTP).
    pub http2: bool,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list, bytes.
    pub h2_max_header_list_bytes: u32,
    /// Seconds between HTTP/2 keep-alive PINGs (and the wait for their answer).
    pub h2_keepalive_secs: u64,
}

impl HttpConfig {
    /// The API server's limits.
    pub fn limits(&self) -> rampart_api::HttpLimits {
        rampart_api::HttpLimits {
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_secs.max(1)),
            header_read_timeout: std::time::Duration::from_secs(
                self.header_read_timeout_secs.max(1),
            ),
            max_connections_per_ip: self.max_connections_per_ip,
            http2: self.http2,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams.max(1),
            h2_max_header_list_bytes: self.h2_max_header_list_bytes.max(1024),
            h2_keepalive_interval: std::time::Duration::from_secs(self.h2_keepalive_secs.max(1)),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; empty means `DATA/tls/cert.pem`, generated self-signed when absent.
    pub cert: String,
    /// PEM private key (mode 0600); empty means `DATA/tls/key.pem`.
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `rampart_gateway=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// How long a command waits for the device's ack.
    pub timeout_ms: u64,
    /// How long a command queued for an offline persistent session stays deliverable.
    pub queued_ttl_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./rampart-data"),
            store: StoreConfig::default(),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            commands: CommandConfig::default(),
            notify: NotifyConfig::default(),
            accounts: AccountsConfig::default(),
            developers: DevelopersConfig::default(),
            oauth: OAuthConfig::default(),
            oidc: OidcConfig::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            limits: Default::default(),
            uploads: UploadsConfig::default(),
            ota: OtaConfig::default(),
            cluster: ClusterConfig::default(),
            admin_token: None,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            tls_listen: "0.0.0.0:8883".into(),
            listen: String::new(),
            max_packet_size: 256 * 1024,
            connect_timeout_secs: 10,
            max_connections: 100_000,
            max_subscriptions: 50,
            max_topic_len: 256,
            max_inflight: 100,
            max_session_expiry_secs: 86_400,
            park_idle_after_ms: 2_000,
            allow_unencrypted: false,
            limits: Default::default(),
            secure_session: SecureSessionConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let d = rampart_api::HttpLimits::default();
        HttpConfig {
            listen: "0.0.0.0:8443".into(),
            metrics_listen: String::new(),
            tls: true,
            max_body_bytes: d.max_body_bytes,
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            body_read_timeout_secs: d.body_read_timeout.as_secs(),
            max_connections_per_ip: d.max_connections_per_ip,
            http2: d.http2,
            h2_max_concurrent_streams: d.h2_max_concurrent_streams,
            h2_max_header_list_bytes: d.h2_max_header_list_bytes,
            h2_keepalive_secs: d.h2_keepalive_interval.as_secs(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            email: "outbox".into(),
            sms: "outbox".into(),
            outbox_dir: String::new(),
            webhook: WebhookConfig::default(),
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            from: String::new(),
            username: String::new(),
            password: String::new(),
            password_file: String::new(),
            starttls: true,
            plaintext: false,
        }
    }
}

impl NotifyConfig {
    /// Build the notifier this section describes.
    pub fn notifier(
        &self,
        data_dir: &Path,
    ) -> Result<rampart_core::identity::notify::Router, ConfigError> {
        use rampart_core::identity::notify::{HttpSms, Notifier, Outbox, Smtp, SmtpSettings};
        use std::sync::Arc;
        let dir = if self.outbox_dir.is_empty() {
            data_dir.join("outbox")
        } else {
            PathBuf::from(&self.outbox_dir)
        };
        let outbox: Arc<dyn Notifier> = Arc::new(Outbox::new(dir));
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        // A secret given as a value, or as a private file.
        let secret = |value: &str, file: &str| -> Result<Option<Secret>, String> {
            if file.is_empty() {
                return Ok(non_empty(value).map(Secret::new));
            }
            let path = Path::new(file);
            rampart_core::secret::check_private(path).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
            Ok(non_empty(text.trim()).map(Secret::new))
        };
        let email: Arc<dyn Notifier> = match self.email.as_str() {
            "outbox" => outbox.clone(),
            "smtp" => {
                if self.smtp.host.is_empty() || self.smtp.from.is_empty() {
                    return Err(
                        "notify.email = \"smtp\" needs notify.smtp.host and notify.smtp.from"
                            .into(),
                    );
                }
                Arc::new(Smtp::new(&SmtpSettings {
                    host: self.smtp.host.clone(),
                    port: self.smtp.port,
                    from: self.smtp.from.clone(),
                    username: non_empty(&self.smtp.username),
                    password: secret(&self.smtp.password, &self.smtp.password_file)?,
                    starttls: self.smtp.starttls,
                    plaintext: self.smtp.plaintext,
                })?)
            }
            other => {
                return Err(format!("notify.email: `{other}` is not `outbox` or `smtp`").into())
            }
        };
        let sms: Arc<dyn Notifier> = match self.sms.as_str() {
            "outbox" => outbox,
            "webhook" => Arc::new(HttpSms::new(
                self.webhook.url.clone(),
                secret(&self.webhook.token, &self.webhook.token_file)?,
            )?),
            other => {
                return Err(format!("notify.sms: `{other}` is not `outbox` or `webhook`").into())
            }
        };
        Ok(rampart_core::identity::notify::Router { email, sms })
    }
}

/// The operator event stream (`docs/enterprise-api.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The TLS socket of newline-delimited JSON; empty disables it (the WebSocket
    /// `GET /v1/enterprise/events` stays available).
    pub listen: String,
    /// Most connections to the TLS socket.
    pub max_connections: usize,
    /// How long an unacknowledged event stays queued for a subscription group.
    pub retention_secs: u64,
    /// Most events queued per subscription group; beyond it the oldest are dropped.
    pub max_events: u64,
    /// Limits of the TLS socket.
    pub limits: EventsLimits,
}

/// `[events.limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsLimits {
    /// Open connections to the TLS socket per source IP (IPv6: per /64); 0: no cap.
    pub connections_per_ip: usize,
}

impl Default for EventsLimits {
    fn default() -> Self {
        EventsLimits {
            connections_per_ip: 16,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            listen: "0.0.0.0:2017".into(),
            max_connections: 1024,
            retention_secs: 86_400,
            max_events: 100_000,
            limits: Default::default(),
        }
    }
}

/// Webhook delivery (`docs/enterprise-api.md`, "Webhooks").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts per batch before its events become dead letters.
    pub max_attempts: u32,
    /// The wait before the first retry (about; doubled for each further one, with jitter).
    pub backoff_base_ms: u64,
    /// The longest wait between two attempts.
    pub backoff_max_ms: u64,
    /// Whole-request timeout of one attempt.
    pub timeout_ms: u64,
    /// Most events in one POST.
    pub batch_max: usize,
    /// Accept `http://` URLs (off: HTTPS only).
    pub allow_http: bool,
    /// Accept URLs whose host is or resolves to a loopback, private, link-local or other
    /// non-public address (the SSRF defence is off).
    pub allow_private_addresses: bool,
    /// A PEM file of extra root certificates trusted for webhook endpoints; empty: the public
    /// roots only.
    pub ca_file: String,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let d = rampart_core::stream::webhooks::WebhooksConfig::default();
        WebhooksConfig {
            max_attempts: d.max_attempts,
            backoff_base_ms: d.backoff_base_ms,
            backoff_max_ms: d.backoff_max_ms,
            timeout_ms: d.timeout_ms,
            batch_max: d.batch_max,
            allow_http: d.allow_http,
            allow_private_addresses: d.allow_private_addresses,
            ca_file: String::new(),
        }
    }
}

impl WebhooksConfig {
    /// The core's settings; reads `ca_file`.
    /// The core's webhook settings; `read_ca` loads `ca_file` (only the server delivers webhooks,
    /// so other commands leave it unread).
    pub fn core(
        &self,
        read_ca: bool,
    ) -> Result<rampart_core::stream::webhooks::WebhooksConfig, ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("webhooks.max_attempts must be 1-100".into());
        }
        if self.batch_max == 0 || self.batch_max > 1000 {
            return Err("webhooks.batch_max must be 1-1000".into());
        }
        let ca_pem = if self.ca_file.is_empty() || !read_ca {
            None
        } else {
            Some(
                std::fs::read(&self.ca_file)
                    .map_err(|e| format!("webhooks.ca_file {}: {e}", self.ca_file))?,
            )
        };
        Ok(rampart_core::stream::webhooks::WebhooksConfig {
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms.max(1),
            backoff_max_ms: self.backoff_max_ms.max(self.backoff_base_ms).max(1),
            timeout_ms: self.timeout_ms.max(1),
            batch_max: self.batch_max,
            allow_http: self.allow_http,
            allow_private_addresses: self.allow_private_addresses,
            ca_pem,
        })
    }
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            timeout_ms: 10_000,
            queued_ttl_secs: 3600,
        }
    }
}

/// Variables that are not configuration keys: the command line reads the data directory and the
/// file from these (and the online commands their server and token), and the bootstrap admin
/// token is kept out of the file format on purpose.
const NOT_CONFIG: &[&str] = &[
    "RAMPART_DATA",
    "RAMPART_ADMIN_TOKEN",
    "RAMPART_CONFIG",
    "RAMPART_TOKEN",
    "RAMPART_URL",
];

/// The variable that sets [`Config::admin_token`].
pub const ADMIN_TOKEN_VAR: &str = "RAMPART_ADMIN_TOKEN";

impl Config {
    /// Defaults <- file <- this process's environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, std::env::vars())
    }

    /// Defaults <- file <- `vars`, read exactly as environment variables would be (`RAMPART_*`
    /// names, `__` between sections, TOML values or bare strings). Lets a caller configure a server
    /// without touching the process environment, which every thread shares.
    pub fn load_from<K, V>(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut value = toml::Value::try_from(Config::default()).map_err(|e| e.to_string())?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file_value: toml::Value =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            merge(&mut value, file_value);
        }
        let mut admin_token = None;
        for (k, v) in vars {
            let (k, v) = (k.as_ref(), v.as_ref());
            if k == ADMIN_TOKEN_VAR {
                admin_token = Some(Secret::new(v.to_owned()));
                continue;
            }
            let Some(rest) = k.strip_prefix("RAMPART_") else {
                continue;
            };
            if NOT_CONFIG.contains(&k) || rest.starts_with("TEST_") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let leaf = toml::from_str::<toml::Table>(&format!("x = {v}"))
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or(toml::Value::String(v.to_owned()));
            let mut patch = leaf;
            for key in path.iter().rev() {
                let mut t = toml::Table::new();
                t.insert(key.clone(), patch);
                patch = toml::Value::Table(t);
            }
            merge(&mut value, patch);
        }
        let mut config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(format!("configuration: {e}")))?;
        config.admin_token = admin_token;
        Ok(config)
    }
}

fn merge(base: &mut toml::Value, patch: toml::Value) {
    match (base, patch) {
        (toml::Value::Table(b), toml::Value::Table(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_needs_postgres_and_safe_names() {
        assert!(Config::default().cluster().unwrap().is_none());
        let e = Config::load_from(
            None,
            [("RAMPART_CLUSTER__NATS_URL", "nats://127.0.0.1:4222")],
        )
        .unwrap()
        .cluster()
        .unwrap_err();
        assert!(e.0.contains("a cluster needs a PostgreSQL store"), "{e}");
        assert!(e.0.contains("SQLite"), "{e}");
        let pg = ("RAMPART_STORE__URL", "postgres://u@h/db");
        let nats = ("RAMPART_CLUSTER__NATS_URL", "nats://127.0.0.1:4222");
        let c = Config::load_from(None, [pg, nats])
            .unwrap()
            .cluster()
            .unwrap()
            .unwrap();
        assert!(c.node_id.starts_with("node-"), "{}", c.node_id);
        assert_eq!(c.subject_prefix, "rampart");
        assert_eq!(c.liveness, std::time::Duration::from_secs(10));
        let other = Config::load_from(None, [pg, nats])
            .unwrap()
            .cluster()
            .unwrap()
            .unwrap();
        assert_ne!(c.node_id, other.node_id, "a node id of its own per process");
        let c = Config::load_from(
            None,
            [
                pg,
                nats,
                ("RAMPART_CLUSTER__NODE_ID", "eu-1"),
                ("RAMPART_CLUSTER__REGION", "eu"),
            ],
        )
        .unwrap()
        .cluster()
        .unwrap()
        .unwrap();
        assert_eq!((c.node_id.as_str(), c.region.as_str()), ("eu-1", "eu"));
        for (k, v, says) in [
            ("RAMPART_CLUSTER__NODE_ID", "a.b", "cluster.node_id"),
            (
                "RAMPART_CLUSTER__SUBJECT_PREFIX",
                "x>",
                "cluster.subject_prefix",
            ),
            (
                "RAMPART_CLUSTER__LIVENESS_SECS",
                "1",
                "cluster.liveness_secs",
            ),
            ("RAMPART_CLUSTER__NATS_URL", "http://x", "cluster.nats_url"),
        ] {
            let e = Config::load_from(None, [pg, nats, (k, v)])
                .unwrap()
                .cluster()
                .unwrap_err();
            assert!(e.0.starts_with(says), "{e}");
        }
    }

    #[test]
    fn default_round_trips_and_unknown_keys_fail() {
        let text = toml::to_string(&Config::default()).unwrap();
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.mqtt.tls_listen, "0.0.0.0:8883");
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(&mut v, toml::from_str("[mqtt]\nbogus = 1").unwrap());
        assert!(v.try_into::<Config>().is_err());
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str("[mqtt]\nmax_connections = 7").unwrap(),
        );
        assert_eq!(v.try_into::<Config>().unwrap().mqtt.max_connections, 7);
    }

    #[test]
    fn variables_from_a_list_override_like_the_environment() {
        let c = Config::load_from(
            None,
            [
                ("RAMPART_MQTT__MAX_CONNECTIONS", "7"),
                ("RAMPART_HTTP__LISTEN", "127.0.0.1:0"),
                ("RAMPART_ADMIN_TOKEN", "a-token-of-sixteen-or-more"),
                ("RAMPART_TEST_POSTGRES_URL", "postgres://ignored"),
                ("RAMPART_DATA", "/ignored"),
                ("RAMPART_TOKEN", "ignored"),
                ("RAMPART_URL", "https://ignored"),
                ("HOME", "/ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.mqtt.max_connections, 7);
        assert_eq!(c.http.listen, "127.0.0.1:0");
        assert_eq!(
            c.admin_token.as_ref().map(Secret::expose),
            Some("a-token-of-sixteen-or-more")
        );
        assert_eq!(c.data_dir, PathBuf::from("./rampart-data"));
        assert!(!format!("{c:?}").contains("a-token-of-sixteen"));
        // The token is never part of the file format.
        let text = toml::to_string(&c).unwrap();
        assert!(!text.contains("admin_token"), "{text}");
        let e = Config::load_from(None, [("RAMPART_MQTT__BOGUS", "1")]).unwrap_err();
        assert!(e.0.starts_with("configuration: "), "{e}");
        // A file, then the list over it.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rampart.toml");
        std::fs::write(&f, "[mqtt]\nmax_connections = 3\nmax_subscriptions = 4\n").unwrap();
        let c = Config::load_from(Some(&f), [("RAMPART_MQTT__MAX_CONNECTIONS", "9")]).unwrap();
        assert_eq!((c.mqtt.max_connections, c.mqtt.max_subscriptions), (9, 4));
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn limits_and_http_sections() {
        let text = toml::to_string_pretty(&Config::default()).unwrap();
        assert!(
            text.contains("[limits]") && text.contains("access_key_per_hour = 3600"),
            "{text}"
        );
        assert!(text.contains("max_body_bytes = 4194304"), "{text}");
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str(
                "[limits]
access_key_per_day = 50000
[limits.ip]
per_minute = 10
burst = 3
[http]
max_body_bytes = 1024",
            )
            .unwrap(),
        );
        let c: Config = v.try_into().unwrap();
        assert_eq!(c.limits.access_key_per_day, 50_000);
        assert_eq!((c.limits.ip.per_minute, c.limits.ip.burst), (10, 3));
        assert_eq!(c.limits.codes_per_recipient.per_day, 10);
        assert_eq!(c.http.limits().max_body_bytes, 1024);
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str(
                "[limits.ip]
per_second = 1",
            )
            .unwrap(),
        );
        assert!(v.try_into::<Config>().is_err(), "unknown keys are refused");
        // Every key of the section is documented.
        let doc = include_str!("../../../docs/config.md");
        let table = toml::Value::try_from(Config::default().limits).unwrap();
        for key in table.as_table().unwrap().keys() {
            assert!(
                doc.contains(&format!("`limits.{key}`")),
                "limits.{key} is not in docs/config.md"
            );
        }
    }

    #[test]
    fn webhooks_section() {
        let c = Config::default();
        let core = c.webhooks.core(true).unwrap();
        assert_eq!((core.max_attempts, core.allow_http), (8, false));
        assert!(core.ca_pem.is_none());
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str("[webhooks]\nmax_attempts = 3\nallow_private_addresses = true").unwrap(),
        );
        let c: Config = v.try_into().unwrap();
        let core = c.webhooks.core(true).unwrap();
        assert_eq!((core.max_attempts, core.allow_private_addresses), (3, true));
        let mut bad = c.webhooks.clone();
        bad.max_attempts = 0;
        assert!(bad.core(true).is_err());
        let mut bad = c.webhooks.clone();
        bad.ca_file = "/nonexistent/ca.pem".into();
        assert!(bad.core(true).unwrap_err().0.contains("webhooks.ca_file"));
        // Left unread where webhooks are not delivered.
        assert!(bad.core(false).unwrap().ca_pem.is_none());
        let doc = include_str!("../../../docs/config.md");
        let table = toml::Value::try_from(Config::default().webhooks).unwrap();
        for key in table.as_table().unwrap().keys() {
            assert!(
                doc.contains(&format!("`webhooks.{key}`")),
                "webhooks.{key} is not in docs/config.md"
            );
        }
    }

    #[test]
    fn mqtt_section_is_documented() {
        let doc = include_str!("../../../docs/config.md");
        let table = toml::Value::try_from(Config::default().mqtt).unwrap();
        for (key, v) in table.as_table().unwrap() {
            let names: Vec<String> = match v.as_table() {
                Some(t) => t.keys().map(|k| format!("mqtt.{key}.{k}")).collect(),
                None => vec![format!("mqtt.{key}")],
            };
            for name in names {
                assert!(
                    doc.contains(&format!("`{name}`")),
                    "{name} is not in docs/config.md"
                );
            }
        }
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str(
                "[mqtt.limits]\ndevice_connect_per_second = 5\n[mqtt.limits.connect_per_ip]\n\
                 per_minute = 0\nburst = 1",
            )
            .unwrap(),
        );
        let c: Config = v.clone().try_into().unwrap();
        assert_eq!(c.mqtt.limits.device_connect_per_second, 5);
        assert_eq!(c.mqtt.limits.connect_per_ip.per_minute, 0);
        assert_eq!(c.mqtt.limits.reconnect_ban_secs, 300);
        merge(&mut v, toml::from_str("[mqtt.limits]\nbogus = 1").unwrap());
        assert!(v.try_into::<Config>().is_err());
    }

    #[test]
    fn lifetimes_default_validate_and_are_documented() {
        let l = Config::default().lifetimes().unwrap();
        assert_eq!(l.access_ms, rampart_core::identity::accounts::ACCESS_TTL_MS);
        assert_eq!(
            l.refresh_ms,
            rampart_core::identity::accounts::REFRESH_TTL_MS
        );
        assert_eq!(l.other, rampart_core::Lifetimes::default());
        let with = |patch: &str| -> Result<CheckedLifetimes, ConfigError> {
            let mut v = toml::Value::try_from(Config::default()).unwrap();
            merge(&mut v, toml::from_str(patch).unwrap());
            v.try_into::<Config>().unwrap().lifetimes()
        };
        let l = with("[accounts]\naccess_ttl_secs = 2\n[oauth]\ncode_ttl_secs = 30\ngrant_ttl_days = 7\nrefresh_ttl_days = 7\n[oidc]\nstate_ttl_secs = 120").unwrap();
        assert_eq!(l.access_ms, 2_000);
        assert_eq!(
            (
                l.other.oauth_code_ms,
                l.other.oauth_grant_ms,
                l.other.oidc_state_ms
            ),
            (30_000, 7 * 86_400_000, 120_000)
        );
        for (patch, key) in [
            (
                "[accounts]\naccess_ttl_secs = 0",
                "accounts.access_ttl_secs = 0: must be 1 to 86400 seconds",
            ),
            (
                "[accounts]\nrefresh_ttl_days = 0",
                "accounts.refresh_ttl_days",
            ),
            (
                "[accounts]\nrefresh_ttl_days = 10000",
                "accounts.refresh_ttl_days",
            ),
            ("[accounts]\ncode_ttl_secs = 5", "accounts.code_ttl_secs"),
            (
                "[accounts]\nbind_token_ttl_secs = 0",
                "accounts.bind_token_ttl_secs",
            ),
            (
                "[developers]\naccess_ttl_secs = 4000000000",
                "developers.access_ttl_secs",
            ),
            (
                "[developers]\nrefresh_ttl_days = 0",
                "developers.refresh_ttl_days",
            ),
            ("[oauth]\ncode_ttl_secs = 3600", "oauth.code_ttl_secs"),
            ("[oauth]\naccess_ttl_secs = 0", "oauth.access_ttl_secs"),
            ("[oauth]\ngrant_ttl_days = 0", "oauth.grant_ttl_days"),
            (
                "[oauth]\nrefresh_ttl_days = 100",
                "oauth.refresh_ttl_days = 100 is longer than oauth.grant_ttl_days = 90",
            ),
            ("[oidc]\nstate_ttl_secs = 86400", "oidc.state_ttl_secs"),
        ] {
            let e = with(patch)
                .err()
                .unwrap_or_else(|| panic!("{patch} was accepted"));
            assert!(e.0.contains(key), "{patch}: {e}");
        }
        let doc = include_str!("../../../docs/config.md");
        let c = Config::default();
        for (section, table) in [
            ("accounts", toml::Value::try_from(&c.accounts).unwrap()),
            ("developers", toml::Value::try_from(&c.developers).unwrap()),
            ("oauth", toml::Value::try_from(&c.oauth).unwrap()),
        ] {
            for key in table.as_table().unwrap().keys() {
                assert!(
                    doc.contains(&format!("`{section}.{key}`")),
                    "{section}.{key} is not in docs/config.md"
                );
            }
        }
        assert!(doc.contains("`oidc.state_ttl_secs`"));
        for key in ["signups_per_ip", "signups_global"] {
            assert!(doc.contains(&format!("`limits.{key}`")));
        }
        assert!(doc.contains("`notify.smtp.plaintext`"));
    }

    #[test]
    fn oidc_section() {
        assert!(Config::default().oidc.providers().unwrap().is_empty());
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str(
                "[oidc.providers.corp]\nissuer = \"https://id.example\"\nclient_id = \"r\"\n\
                 client_secret = \"s\"",
            )
            .unwrap(),
        );
        let c: Config = v.clone().try_into().unwrap();
        let p = c.oidc.providers().unwrap();
        assert_eq!(
            (p[0].name.as_str(), p[0].scopes.clone()),
            ("corp", vec!["email".to_owned()])
        );
        assert!(!p[0].link_verified_email);
        let mut bad = v.clone();
        merge(
            &mut bad,
            toml::from_str("[oidc.providers.corp]\nbogus = 1").unwrap(),
        );
        assert!(bad.try_into::<Config>().is_err());
        let mut c = c;
        if let Some(p) = c.oidc.providers.get_mut("corp") {
            p.client_secret.clear();
        }
        assert!(c.oidc.providers().is_err());
    }

    #[test]
    fn notify_section() {
        let c = Config::default();
        assert_eq!(
            (c.notify.email.as_str(), c.notify.sms.as_str()),
            ("outbox", "outbox")
        );
        assert!(c.notify.notifier(Path::new("/tmp/x")).is_ok());
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        merge(
            &mut v,
            toml::from_str(
                "[notify]\nemail = \"smtp\"\nsms = \"webhook\"\n[notify.smtp]\nhost = \"smtp.example\"\n\
                 from = \"noreply@example.com\"\n[notify.webhook]\nurl = \"https://sms.example/send\"",
            )
            .unwrap(),
        );
        let c: Config = v.try_into().unwrap();
        assert!(c.notify.notifier(Path::new("/tmp/x")).is_ok());
        let mut bad = c.notify.clone();
        bad.email = "pigeon".into();
        assert!(bad.notifier(Path::new("/tmp/x")).is_err());
        let mut bad = c.notify.clone();
        bad.smtp.host = String::new();
        assert!(bad.notifier(Path::new("/tmp/x")).is_err());
        // secrets from files: private ones only
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("smtp.pw");
        rampart_core::secret::write_private(&f, b"hunter2\n").unwrap();
        let mut ok = c.notify.clone();
        ok.smtp.password_file = f.display().to_string();
        ok.smtp.username = "me".into();
        assert!(ok.notifier(Path::new("/tmp/x")).is_ok());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ok.notifier(Path::new("/tmp/x")).is_err());
    }
}
