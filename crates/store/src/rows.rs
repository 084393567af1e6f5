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

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRow {
    pub ts: i64,
    pub point: String,
    /// The value as JSON text.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, sqlx::FromRow)]
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
