//! Certificate devices' rows: each product's trusted CAs, the newest revocation list of each CA,
//! and the certificate a device last connected with. Parsing and checking certificates is
//! `rampart-core`'s work; these are bytes and fields.

use crate::{map_conflict, BeginWrite, Result, Store};

/// A CA certificate a product trusts for its devices.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CaRow {
    pub ca_id: String,
    pub product_key: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// The subject as text (RFC 4514).
    pub subject: String,
    /// Unix milliseconds.
    pub not_after: i64,
    pub der: Vec<u8>,
    pub created_at: i64,
}

/// The revocation list a CA published last.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CrlRow {
    pub ca_id: String,
    /// The CRL number as a decimal string (it may exceed 64 bits).
    pub crl_number: String,
    pub der: Vec<u8>,
    pub this_update: i64,
    pub created_at: i64,
}

/// The certificate a device presented at its last accepted connection.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceCertRow {
    pub did: String,
    pub ca_id: String,
    /// Serial number, hex.
    pub serial: String,
    pub sha256: String,
    pub not_after: i64,
    pub seen_at: i64,
}

impl Store {
    /// Add a CA to a product; `Conflict` when the product has it already.
    pub async fn insert_ca(&self, r: &CaRow) -> Result<()> {
        let sql = "INSERT INTO product_cas (ca_id, product_key, sha256, subject, not_after, der, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(self, p => sqlx::query(sql).bind(&r.ca_id).bind(&r.product_key).bind(&r.sha256)
            .bind(&r.subject).bind(r.not_after).bind(&r.der).bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// A product's CAs, oldest first.
    pub async fn list_cas(&self, product_key: &str) -> Result<Vec<CaRow>> {
        let sql = "SELECT * FROM product_cas WHERE product_key = $1 ORDER BY created_at, ca_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_all(p).await?))
    }

    /// Remove a CA (and its revocation list); the row it was, or `None` when the product has no
    /// such CA.
    pub async fn delete_ca(&self, product_key: &str, ca_id: &str) -> Result<Option<CaRow>> {
        let sql = "DELETE FROM product_cas WHERE product_key = $1 AND ca_id = $2 RETURNING *";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(product_key).bind(ca_id).fetch_optional(p).await?),
        )
    }

    /// The revocation lists of a product's CAs.
    pub async fn list_crls(&self, product_key: &str) -> Result<Vec<CrlRow>> {
        let sql = "SELECT r.* FROM product_crls r JOIN product_cas c ON c.ca_id = r.ca_id \
                   WHERE c.product_key = $1 ORDER BY r.ca_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_all(p).await?))
    }

    /// Keep `r` as its CA's revocation list unless the stored one is as new or newer (by CRL
    /// number, compared by the caller through `newer`). Returns whether `r` was stored.
    pub async fn put_crl(&self, r: &CrlRow, newer: impl Fn(&str) -> bool) -> Result<bool> {
        let get = "SELECT crl_number FROM product_crls WHERE ca_id = $1";
        let upsert = "INSERT INTO product_crls (ca_id, crl_number, der, this_update, created_at) \
                      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ca_id) DO UPDATE SET \
                      crl_number = excluded.crl_number, der = excluded.der, \
                      this_update = excluded.this_update, created_at = excluded.created_at";
        // It reads, then writes: the write lock is taken first (see `BeginWrite`).
        with_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let old: Option<String> = sqlx::query_scalar(get).bind(&r.ca_id).fetch_optional(&mut *tx).await?;
            if old.as_deref().is_some_and(|o| !newer(o)) {
                return Ok(false);
            }
            sqlx::query(upsert).bind(&r.ca_id).bind(&r.crl_number).bind(&r.der)
                .bind(r.this_update).bind(r.created_at).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Remember the certificate a device connected with.
    pub async fn put_device_cert(&self, r: &DeviceCertRow) -> Result<()> {
        let sql =
            "INSERT INTO device_certificates (did, ca_id, serial, sha256, not_after, seen_at) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (did) DO UPDATE SET \
                   ca_id = excluded.ca_id, serial = excluded.serial, sha256 = excluded.sha256, \
                   not_after = excluded.not_after, seen_at = excluded.seen_at";
        with_db!(self, p => sqlx::query(sql).bind(&r.did).bind(&r.ca_id).bind(&r.serial)
            .bind(&r.sha256).bind(r.not_after).bind(r.seen_at).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The certificate a device last connected with.
    pub async fn device_cert(&self, did: &str) -> Result<Option<DeviceCertRow>> {
        let sql = "SELECT * FROM device_certificates WHERE did = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_optional(p).await?))
    }

    /// Devices whose last certificate was issued by `ca_id` with one of these serials (one read
    /// of the CA's devices, however long the revocation list).
    pub async fn devices_with_serials(
        &self,
        ca_id: &str,
        serials: &[String],
    ) -> Result<Vec<String>> {
        let sql = "SELECT did, serial FROM device_certificates WHERE ca_id = $1";
        let rows: Vec<(String, String)> =
            with_db!(self, p => sqlx::query_as(sql).bind(ca_id).fetch_all(p).await?);
        let revoked: std::collections::HashSet<&str> = serials.iter().map(String::as_str).collect();
        Ok(rows
            .into_iter()
            .filter(|(_, serial)| revoked.contains(serial.as_str()))
            .map(|(did, _)| did)
            .collect())
    }
}

impl Store {
    /// The CAs, of any product, whose subject is `subject` (a certificate's issuer), each with
    /// its revocation list when one was posted.
    pub async fn cas_by_subject(&self, subject: &str) -> Result<Vec<(CaRow, Option<CrlRow>)>> {
        let cas = "SELECT * FROM product_cas WHERE subject = $1 ORDER BY created_at, ca_id";
        let crl = "SELECT * FROM product_crls WHERE ca_id = $1";
        with_db!(self, p => {
            let rows: Vec<CaRow> = sqlx::query_as(cas).bind(subject).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let c: Option<CrlRow> = sqlx::query_as(crl).bind(&r.ca_id).fetch_optional(p).await?;
                out.push((r, c));
            }
            Ok(out)
        })
    }
}
