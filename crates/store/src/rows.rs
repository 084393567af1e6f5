//! Row types, one per table, as stored (secrets already encrypted by the caller).

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProductRow {
    pub product_key: String,
    pub name: String,
    pub secret_enc: Vec<u8>,
    pub dynamic_registration: bool,
    pub allowlist: bool,
    pub report_limit_per_min: i64,
    /// The data-point list as JSON.
    pub model: String,
    pub enterprise_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactoryIdentityRow {
    pub serial: String,
    pub product_key: String,
    pub batch_id: String,
    pub secret_enc: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceRow {
    pub did: String,
    pub product_key: String,
    pub hardware_id: String,
    /// `product` (dynamic registration) or `device` (factory secret).
    pub mode: String,
    pub secret_enc: Vec<u8>,
    pub passcode_enc: Vec<u8>,
    pub created_at: i64,
    pub online: bool,
    pub last_seen: Option<i64>,
    /// Latest values as a JSON object.
    pub state: String,
}

/// A device's product and sealed secret ([`crate::Store::device_credentials`]), and the `ts` of
/// the last signed CONNECT accepted for it (0 before the first).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceCredentials {
    pub product_key: String,
    pub secret_enc: Vec<u8>,
    pub connect_ts: i64,
    /// Refused at CONNECT while set.
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRow {
    pub ts: i64,
    pub point: String,
    /// The value as JSON text.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub ts: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub source_ip: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// One validated report to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub did: String,
    pub ts: i64,
    /// The report's values (one history row holds them all).
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// A signed CONNECT of `did` with timestamp `ts` was accepted (its `connect_ts` only grows).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRow {
    pub did: String,
    pub ts: i64,
}

/// A device came online or went offline.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    pub did: String,
    pub online: bool,
    pub ts: i64,
}

/// A client application end users sign in through.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AppRow {
    pub app_id: String,
    pub name: String,
    /// SHA-256 of the app secret, hex.
    pub secret_hash: String,
    /// The product keys the app's users may bind, as a JSON array.
    pub product_keys: String,
    pub created_at: i64,
}

/// An end user. `email` and `phone` are stored normalised; at least one is set.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub active: bool,
    pub app_id: String,
    pub created_at: i64,
    pub failed_count: i64,
    pub first_failed_at: i64,
    pub locked_until: i64,
    pub lockouts: i64,
}

/// Failed-login bookkeeping of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockState {
    pub failed_count: i64,
    pub first_failed_at: i64,
    pub locked_until: i64,
    pub lockouts: i64,
}

/// A one-time code (activation, password reset), stored as a hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CodeRow {
    pub recipient: String,
    pub purpose: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub attempts: i64,
    pub created_at: i64,
}

/// The session behind a token: its user, its family (one login) and the app signed in through.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: String,
    pub family_id: String,
    pub app_id: String,
    pub expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshUse {
    /// The token was live and is now spent; issue the next pair in this session.
    Rotated(SessionRow),
    /// The token was already spent: someone replays it. The family should be revoked.
    Reused(SessionRow),
    /// Unknown, expired, or its family is revoked.
    Invalid,
}

/// A user's access to a device.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BindingRow {
    pub did: String,
    pub user_id: String,
    /// `owner`, `member` or `guest`.
    pub role: String,
    /// The share that granted it (none for the owner).
    pub share_id: Option<String>,
    pub created_at: i64,
    pub product_key: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ShareRow {
    pub share_id: String,
    pub did: String,
    pub owner_id: String,
    pub invitee_id: String,
    /// `member` or `guest`.
    pub role: String,
    /// `pending` or `accepted`.
    pub status: String,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BindTokenRow {
    pub token_hash: String,
    pub did: String,
    pub created_by: String,
    pub expires_at: i64,
    pub created_at: i64,
}
