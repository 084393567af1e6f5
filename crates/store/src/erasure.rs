//! Erasure: everything held about one device or one end user removed in one transaction, so a
//! crash leaves either all of it or none of it. Each statement's count is returned for the answer
//! and the audit entry.
//!
//! Audit rows are never touched here: they name devices and users by their random ids, which
//! become pseudonyms once the rows those ids point at are gone, and rewriting them would break
//! the audit chain.

use crate::reports::lock;
use crate::{BeginWrite, Db, Result, Store};

/// What erasing one device removed, table by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceErased {
    /// History entries, reports not yet compacted included.
    pub history: u64,
    pub bindings: u64,
    /// Shares and share invitations of the device.
    pub shares: u64,
    pub commands: u64,
    /// Desired state, certificates, OTA records, bind tokens, queued events and dead letters.
    pub other: u64,
}

/// What erasing one end user removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserErased {
    pub bindings: u64,
    /// Shares given or received, and invitations sent or addressed to the user.
    pub shares: u64,
    /// OAuth grants (with their codes and tokens).
    pub grants: u64,
    /// Login sessions (token families, with their tokens).
    pub sessions: u64,
    /// Links to OpenID Connect providers.
    pub identity_links: u64,
    /// One-time codes sent to the user's e-mail or phone.
    pub codes: u64,
}

/// SQLite overwrites what a statement deletes with zeros while this is on, instead of leaving it
/// in free pages. The report writer's connection has it off (compaction deletes the whole
/// journal every second and must not pay for it), so a device erasure on that connection
/// switches it on for its own transaction only.
const SECURE_DELETE_ON: &str = "PRAGMA secure_delete = ON";
const SECURE_DELETE_OFF: &str = "PRAGMA secure_delete = OFF";

/// After an erasure on SQLite: copy the WAL into the database and cut it to zero bytes, so the
/// erased rows' earlier page images do not stay readable in the WAL file.
async fn truncate_wal(pool: &sqlx::SqlitePool) -> Result<()> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    Ok(())
}

/// One erasure's transaction. On SQLite it runs on the report writer's connection, like a wipe,
/// so a compaction cannot merge journalled values back into a state that no longer exists, with
/// `secure_delete` on for its own statements; the WAL is cut after it. `$body` is given the
/// transaction and evaluates to `Option<T>`: `None` (nothing to erase) rolls back. Evaluates to
/// `Option<T>`.
macro_rules! erasure {
    ($store:expr, |$tx:ident| $body:block) => {{
        macro_rules! within {
            ($pool:expr, $sqlite:expr) => {{
                let mut $tx = $pool.begin_write().await?;
                if $sqlite {
                    sqlx::query(SECURE_DELETE_ON).execute(&mut *$tx).await?;
                }
                let out = $body;
                if $sqlite {
                    sqlx::query(SECURE_DELETE_OFF).execute(&mut *$tx).await?;
                }
                match out {
                    Some(o) => {
                        $tx.commit().await?;
                        Some(o)
                    }
                    None => {
                        $tx.rollback().await?;
                        None
                    }
                }
            }};
        }
        match &$store.db {
            Db::Sqlite(p) => {
                let pool = $store.report_writer.as_ref().unwrap_or(p);
                let out = within!(pool, true);
                truncate_wal(pool).await?;
                out
            }
            Db::Postgres(p) => within!(p, false),
        }
    }};
}

/// Statements run in order; children before the rows they reference.
const DEVICE_TABLES: &[(&str, Part)] = &[
    ("DELETE FROM history WHERE did = $1", Part::History),
    ("DELETE FROM bindings WHERE did = $1", Part::Bindings),
    ("DELETE FROM shares WHERE did = $1", Part::Shares),
    ("DELETE FROM share_invitations WHERE did = $1", Part::Shares),
    ("DELETE FROM commands WHERE did = $1", Part::Commands),
    ("DELETE FROM bind_tokens WHERE did = $1", Part::Other),
    ("DELETE FROM device_shadows WHERE did = $1", Part::Other),
    (
        "DELETE FROM device_certificates WHERE did = $1",
        Part::Other,
    ),
    ("DELETE FROM ota_devices WHERE did = $1", Part::Other),
    ("DELETE FROM ota_device_info WHERE did = $1", Part::Other),
    ("DELETE FROM event_queue WHERE did = $1", Part::Other),
    (
        "DELETE FROM webhook_dead_letters WHERE did = $1",
        Part::Other,
    ),
];

#[derive(Clone, Copy)]
enum Part {
    History,
    Bindings,
    Shares,
    Commands,
    Other,
}

impl DeviceErased {
    fn add(&mut self, part: Part, n: u64) {
        let slot = match part {
            Part::History => &mut self.history,
            Part::Bindings => &mut self.bindings,
            Part::Shares => &mut self.shares,
            Part::Commands => &mut self.commands,
            Part::Other => &mut self.other,
        };
        *slot += n;
    }
}

impl Store {
    /// Remove a device and everything recorded about it. `None` when there is no such device.
    /// On SQLite this runs on the report writer's connection, like a wipe, so a compaction
    /// cannot merge journalled values back into a state that no longer exists.
    pub async fn erase_device(&self, did: &str) -> Result<Option<DeviceErased>> {
        Ok(erasure!(self, |tx| {
            let mut out = DeviceErased::default();
            for (sql, part) in DEVICE_TABLES {
                let n = sqlx::query(sql)
                    .bind(did)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.add(*part, n);
            }
            // Only SQLite journals reports before they reach the history.
            if self.pending.is_some() {
                let n = sqlx::query("DELETE FROM report_journal WHERE did = $1")
                    .bind(did)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.add(Part::History, n);
            }
            let gone = sqlx::query("DELETE FROM devices WHERE did = $1")
                .bind(did)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone == 0 {
                None
            } else {
                if let Some(pending) = &self.pending {
                    lock(pending).forget(did);
                }
                Some(out)
            }
        }))
    }

    /// Remove an end user: their bindings, shares (given and received) and invitations, OAuth
    /// grants with their codes and tokens, login sessions with their tokens, provider links, codes
    /// sent to their e-mail or phone, and the account row. `None` when there is no such user.
    pub async fn erase_user(&self, user_id: &str) -> Result<Option<UserErased>> {
        // On SQLite, the pool's connections zero what they delete (see `Store::open`).
        let out = with_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let contact: Option<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT email, phone FROM users WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((email, phone)) = contact else {
                tx.rollback().await?;
                return Ok(None);
            };
            let mut out = UserErased::default();
            macro_rules! run {
                ($sql:expr, $($arg:expr),*) => {
                    sqlx::query($sql)$(.bind($arg))*.execute(&mut *tx).await?.rows_affected()
                };
            }
            // Bindings that others hold through a share this user gave end with the share.
            out.bindings += run!(
                "DELETE FROM bindings WHERE user_id = $1 OR share_id IN \
                 (SELECT share_id FROM shares WHERE owner_id = $1)",
                user_id
            );
            out.shares += run!(
                "DELETE FROM shares WHERE owner_id = $1 OR invitee_id = $1",
                user_id
            );
            out.shares += run!(
                "DELETE FROM share_invitations WHERE owner_id = $1 OR email = $2 OR phone = $3",
                user_id,
                email.as_deref(),
                phone.as_deref()
            );
            run!("DELETE FROM bind_tokens WHERE created_by = $1", user_id);
            run!(
                "DELETE FROM oauth_tokens WHERE grant_id IN \
                 (SELECT grant_id FROM oauth_grants WHERE user_id = $1)",
                user_id
            );
            run!(
                "DELETE FROM oauth_codes WHERE grant_id IN \
                 (SELECT grant_id FROM oauth_grants WHERE user_id = $1)",
                user_id
            );
            out.grants += run!("DELETE FROM oauth_grants WHERE user_id = $1", user_id);
            run!(
                "DELETE FROM tokens WHERE family_id IN \
                 (SELECT family_id FROM token_families WHERE user_id = $1)",
                user_id
            );
            out.sessions += run!("DELETE FROM token_families WHERE user_id = $1", user_id);
            out.identity_links += run!("DELETE FROM oidc_links WHERE user_id = $1", user_id);
            out.codes += run!(
                "DELETE FROM user_codes WHERE recipient = $1 OR recipient = $2",
                email.as_deref(),
                phone.as_deref()
            );
            run!("DELETE FROM users WHERE user_id = $1", user_id);
            tx.commit().await?;
            out
        });
        if let Db::Sqlite(p) = &self.db {
            truncate_wal(p).await?;
        }
        Ok(Some(out))
    }
}

/// A login session of a user, as listed in their export.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionSummaryRow {
    pub family_id: String,
    pub app_id: String,
    pub revoked: bool,
    pub created_at: i64,
}

/// Everything the account tables hold about one user (their devices' data is read separately).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecords {
    pub user: crate::UserRow,
    pub bindings: Vec<crate::BindingRow>,
    /// Shares the user gave or received.
    pub shares: Vec<crate::ShareRow>,
    pub grants: Vec<crate::OAuthGrantRow>,
    pub sessions: Vec<SessionSummaryRow>,
    pub identity_links: Vec<crate::OidcLinkRow>,
}

/// Most rows of each kind in one export; a user past it holds unusually much of one kind.
const EXPORT_ROWS: i64 = 10_000;

impl Store {
    /// Every account row about `user_id`, for their data export. `None` when there is no such user.
    pub async fn user_records(&self, user_id: &str) -> Result<Option<UserRecords>> {
        let Some(user) = self.get_user(user_id).await? else {
            return Ok(None);
        };
        with_db!(self, p => {
            let bindings = sqlx::query_as(
                "SELECT b.did, b.user_id, b.role, b.share_id, b.created_at, d.product_key \
                 FROM bindings b JOIN devices d ON d.did = b.did \
                 WHERE b.user_id = $1 ORDER BY b.created_at, b.did LIMIT $2",
            )
            .bind(user_id).bind(EXPORT_ROWS).fetch_all(p).await?;
            let shares = sqlx::query_as(
                "SELECT share_id, did, owner_id, invitee_id, role, status, created_at, accepted_at \
                 FROM shares WHERE owner_id = $1 OR invitee_id = $1 \
                 ORDER BY created_at, share_id LIMIT $2",
            )
            .bind(user_id).bind(EXPORT_ROWS).fetch_all(p).await?;
            let grants = sqlx::query_as(
                "SELECT grant_id, user_id, client_id, scope, active, revoked, created_at, expires_at \
                 FROM oauth_grants WHERE user_id = $1 ORDER BY created_at, grant_id LIMIT $2",
            )
            .bind(user_id).bind(EXPORT_ROWS).fetch_all(p).await?;
            let sessions = sqlx::query_as(
                "SELECT family_id, app_id, revoked, created_at FROM token_families \
                 WHERE user_id = $1 ORDER BY created_at, family_id LIMIT $2",
            )
            .bind(user_id).bind(EXPORT_ROWS).fetch_all(p).await?;
            let identity_links = sqlx::query_as(
                "SELECT provider, subject, user_id, email, created_at FROM oidc_links \
                 WHERE user_id = $1 ORDER BY created_at, provider LIMIT $2",
            )
            .bind(user_id).bind(EXPORT_ROWS).fetch_all(p).await?;
            Ok(Some(UserRecords { user, bindings, shares, grants, sessions, identity_links }))
        })
    }

    /// When the login session `family_id` began (Unix ms), if it exists and is not revoked.
    pub async fn session_started_at(&self, family_id: &str) -> Result<Option<i64>> {
        let sql = "SELECT created_at FROM token_families WHERE family_id = $1 AND revoked = $2";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(family_id).bind(false)
            .fetch_optional(p).await?),
        )
    }
}

/// What erasing a product removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductErased {
    pub devices: u64,
    /// History entries of its devices.
    pub history: u64,
    /// Bindings, shares and invitations of its devices.
    pub bindings: u64,
    pub firmware: u64,
    pub campaigns: u64,
    /// Factory identities, batches and credentials, allowlisted ids.
    pub factory: u64,
    /// Everything else: commands, desired states, certificate records, CAs and CRLs, the OTA key,
    /// access-key links, event subscriptions, queued events, dead letters.
    pub other: u64,
    /// SHA-256 of the uploaded files it held (firmware images, allowlist files): files whose
    /// last holder it was are unused now.
    pub upload_hashes: Vec<String>,
}

/// The devices of product `$1`, for the statements below.
macro_rules! of_product {
    ($sql:literal) => {
        concat!(
            $sql,
            " WHERE did IN (SELECT did FROM devices WHERE product_key = $1)"
        )
    };
}

/// Statements run in order; children before the rows they reference.
const PRODUCT_TABLES: &[(&str, ProductPart)] = &[
    (of_product!("DELETE FROM history"), ProductPart::History),
    (of_product!("DELETE FROM bindings"), ProductPart::Bindings),
    (of_product!("DELETE FROM shares"), ProductPart::Bindings),
    (
        of_product!("DELETE FROM share_invitations"),
        ProductPart::Bindings,
    ),
    (of_product!("DELETE FROM commands"), ProductPart::Other),
    (of_product!("DELETE FROM bind_tokens"), ProductPart::Other),
    (
        of_product!("DELETE FROM device_shadows"),
        ProductPart::Other,
    ),
    (
        of_product!("DELETE FROM device_certificates"),
        ProductPart::Other,
    ),
    (
        of_product!("DELETE FROM ota_device_info"),
        ProductPart::Other,
    ),
    (
        "DELETE FROM ota_devices WHERE campaign_id IN \
         (SELECT campaign_id FROM ota_campaigns WHERE product_key = $1)",
        ProductPart::Other,
    ),
    (
        "DELETE FROM ota_campaigns WHERE product_key = $1",
        ProductPart::Campaigns,
    ),
    (
        "DELETE FROM upload_refs WHERE holder = 'allowlist:' || $1 OR holder IN \
         (SELECT 'firmware:' || firmware_id FROM firmware WHERE product_key = $1)",
        ProductPart::Uploads,
    ),
    (
        "DELETE FROM firmware WHERE product_key = $1",
        ProductPart::Firmware,
    ),
    (
        "DELETE FROM ota_keys WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM event_queue WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM webhook_dead_letters WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM event_groups WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM product_crls WHERE ca_id IN \
         (SELECT ca_id FROM product_cas WHERE product_key = $1)",
        ProductPart::Other,
    ),
    (
        "DELETE FROM product_cas WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM access_key_products WHERE product_key = $1",
        ProductPart::Other,
    ),
    (
        "DELETE FROM devices WHERE product_key = $1",
        ProductPart::Devices,
    ),
    (
        "DELETE FROM factory_identities WHERE product_key = $1",
        ProductPart::Factory,
    ),
    (
        "DELETE FROM factory_batches WHERE product_key = $1",
        ProductPart::Factory,
    ),
    (
        "DELETE FROM factory_credentials WHERE product_key = $1",
        ProductPart::Factory,
    ),
    (
        "DELETE FROM allowlist WHERE product_key = $1",
        ProductPart::Factory,
    ),
];

#[derive(Clone, Copy)]
enum ProductPart {
    /// Holders of uploaded files: not counted (the firmware and allowlist counts say it).
    Uploads,
    Devices,
    History,
    Bindings,
    Firmware,
    Campaigns,
    Factory,
    Other,
}

impl ProductErased {
    fn add(&mut self, part: ProductPart, n: u64) {
        let slot = match part {
            ProductPart::Uploads => return,
            ProductPart::Devices => &mut self.devices,
            ProductPart::History => &mut self.history,
            ProductPart::Bindings => &mut self.bindings,
            ProductPart::Firmware => &mut self.firmware,
            ProductPart::Campaigns => &mut self.campaigns,
            ProductPart::Factory => &mut self.factory,
            ProductPart::Other => &mut self.other,
        };
        *slot += n;
    }
}

impl Store {
    /// The ids of a product's devices.
    pub async fn product_device_ids(&self, product_key: &str) -> Result<Vec<String>> {
        let sql = "SELECT did FROM devices WHERE product_key = $1 ORDER BY did";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(product_key).fetch_all(p).await?))
    }

    /// Refuse every device of a product at CONNECT from now on (the first step of its erasure).
    pub async fn disable_product_devices(&self, product_key: &str) -> Result<u64> {
        let sql = "UPDATE devices SET disabled = $1 WHERE product_key = $2";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(true).bind(product_key)
            .execute(p).await?.rows_affected()),
        )
    }

    /// Remove a product with its devices and everything recorded about them, its firmware,
    /// campaigns, OTA key, CAs, factory identities, batches and credentials, and allowlist, in
    /// one transaction. `None` when there is no such product.
    pub async fn erase_product(&self, product_key: &str) -> Result<Option<ProductErased>> {
        Ok(erasure!(self, |tx| {
            let mut out = ProductErased {
                upload_hashes: sqlx::query_scalar(
                    "SELECT DISTINCT sha256 FROM upload_refs WHERE holder = 'allowlist:' || $1 \
                     OR holder IN (SELECT 'firmware:' || firmware_id FROM firmware \
                     WHERE product_key = $1)",
                )
                .bind(product_key)
                .fetch_all(&mut *tx)
                .await?,
                ..Default::default()
            };
            let dids: Vec<String> =
                sqlx::query_scalar("SELECT did FROM devices WHERE product_key = $1")
                    .bind(product_key)
                    .fetch_all(&mut *tx)
                    .await?;
            if self.pending.is_some() {
                let n = sqlx::query(of_product!("DELETE FROM report_journal"))
                    .bind(product_key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.add(ProductPart::History, n);
            }
            for (sql, part) in PRODUCT_TABLES {
                let n = sqlx::query(sql)
                    .bind(product_key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                out.add(*part, n);
            }
            let gone = sqlx::query("DELETE FROM products WHERE product_key = $1")
                .bind(product_key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone == 0 {
                None
            } else {
                if let Some(pending) = &self.pending {
                    let mut g = lock(pending);
                    for did in &dids {
                        g.forget(did);
                    }
                }
                Some(out)
            }
        }))
    }
}

/// What erasing an enterprise removed (its products are erased first, one by one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnterpriseErased {
    pub members: u64,
    pub invites: u64,
    /// Access keys with their product links.
    pub access_keys: u64,
    /// Webhooks with their dead letters.
    pub webhooks: u64,
}

/// What erasing a developer account removed (personal products are erased first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeveloperErased {
    /// Login sessions with their tokens.
    pub sessions: u64,
    pub recovery_codes: u64,
    /// Memberships of enterprises.
    pub memberships: u64,
    /// Invitations addressed to the developer's e-mail.
    pub invites: u64,
    /// OAuth clients the developer registered, with their grants, codes and tokens.
    pub oauth_clients: u64,
}

impl Store {
    /// The products an enterprise owns.
    pub async fn enterprise_product_keys(&self, enterprise_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT product_key FROM products WHERE enterprise_id = $1 ORDER BY product_key";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(enterprise_id).fetch_all(p).await?))
    }

    /// The products a developer owns personally.
    pub async fn developer_product_keys(&self, developer_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT product_key FROM products WHERE owner_developer_id = $1 \
                   ORDER BY product_key";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(developer_id).fetch_all(p).await?))
    }

    /// Remove an enterprise that owns no product any more: its access keys, webhooks with their
    /// dead letters, invitations, memberships and the enterprise row. `None` when there is no
    /// such enterprise; `Conflict` while it still owns a product.
    pub async fn erase_enterprise(&self, enterprise_id: &str) -> Result<Option<EnterpriseErased>> {
        with_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let products: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE enterprise_id = $1")
                    .bind(enterprise_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if products > 0 {
                tx.rollback().await?;
                return Err(crate::StoreError::Conflict);
            }
            let mut out = EnterpriseErased::default();
            macro_rules! run {
                ($sql:expr) => {
                    sqlx::query($sql).bind(enterprise_id).execute(&mut *tx).await?.rows_affected()
                };
            }
            run!("DELETE FROM access_key_products WHERE key_id IN \
                  (SELECT key_id FROM access_keys WHERE enterprise_id = $1)");
            out.access_keys += run!("DELETE FROM access_keys WHERE enterprise_id = $1");
            run!("DELETE FROM webhook_dead_letters WHERE webhook_id IN \
                  (SELECT webhook_id FROM webhooks WHERE enterprise_id = $1)");
            out.webhooks += run!("DELETE FROM webhooks WHERE enterprise_id = $1");
            out.invites += run!("DELETE FROM enterprise_invites WHERE enterprise_id = $1");
            out.members += run!("DELETE FROM enterprise_members WHERE enterprise_id = $1");
            if run!("DELETE FROM enterprises WHERE enterprise_id = $1") == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(out))
        })
    }

    /// Remove a developer account that owns no product personally: its sessions and tokens,
    /// recovery codes, memberships, invitations addressed to its e-mail, the OAuth clients it
    /// registered (with their grants, codes and tokens), and the account row (e-mail, password
    /// hash, sealed TOTP seed). `None` when there is no such developer; `Conflict` while it
    /// still owns a product.
    pub async fn erase_developer(&self, developer_id: &str) -> Result<Option<DeveloperErased>> {
        let owner = format!("developer:{developer_id}");
        with_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let email: Option<String> =
                sqlx::query_scalar("SELECT email FROM developers WHERE developer_id = $1")
                    .bind(developer_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(email) = email else {
                tx.rollback().await?;
                return Ok(None);
            };
            let products: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE owner_developer_id = $1")
                    .bind(developer_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if products > 0 {
                tx.rollback().await?;
                return Err(crate::StoreError::Conflict);
            }
            let mut out = DeveloperErased::default();
            macro_rules! run {
                ($sql:expr, $arg:expr) => {
                    sqlx::query($sql).bind($arg).execute(&mut *tx).await?.rows_affected()
                };
            }
            run!(
                "DELETE FROM developer_tokens WHERE family_id IN \
                 (SELECT family_id FROM developer_token_families WHERE developer_id = $1)",
                developer_id
            );
            out.sessions += run!(
                "DELETE FROM developer_token_families WHERE developer_id = $1",
                developer_id
            );
            out.recovery_codes += run!(
                "DELETE FROM developer_recovery_codes WHERE developer_id = $1",
                developer_id
            );
            out.memberships += run!(
                "DELETE FROM enterprise_members WHERE developer_id = $1",
                developer_id
            );
            out.invites += run!("DELETE FROM enterprise_invites WHERE email = $1", &email);
            run!(
                "DELETE FROM oauth_tokens WHERE grant_id IN (SELECT grant_id FROM oauth_grants \
                 WHERE client_id IN (SELECT client_id FROM oauth_clients WHERE owner = $1))",
                &owner
            );
            run!(
                "DELETE FROM oauth_codes WHERE grant_id IN (SELECT grant_id FROM oauth_grants \
                 WHERE client_id IN (SELECT client_id FROM oauth_clients WHERE owner = $1))",
                &owner
            );
            run!(
                "DELETE FROM oauth_grants WHERE client_id IN \
                 (SELECT client_id FROM oauth_clients WHERE owner = $1)",
                &owner
            );
            out.oauth_clients += run!("DELETE FROM oauth_clients WHERE owner = $1", &owner);
            run!("DELETE FROM developers WHERE developer_id = $1", developer_id);
            tx.commit().await?;
            Ok(Some(out))
        })
    }

    /// When the developer login session `family_id` began (Unix ms), if it exists and is live.
    pub async fn developer_session_started_at(&self, family_id: &str) -> Result<Option<i64>> {
        let sql = "SELECT created_at FROM developer_token_families \
                   WHERE family_id = $1 AND revoked = $2";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(family_id).bind(false)
            .fetch_optional(p).await?),
        )
    }
}
