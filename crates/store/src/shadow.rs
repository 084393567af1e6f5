//! Device shadows (`device_shadows`): a device's desired data points as one JSON object and a
//! version that grows by one at every write. Writes are compare-and-set on the version, so two
//! writers (nodes or requests) never lose each other's change; merging is the caller's.

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShadowRow {
    pub did: String,
    /// The desired values as a JSON object.
    pub desired: String,
    pub version: i64,
    pub updated_at: i64,
}

impl Store {
    /// The shadow of `did`, if its desired state was ever written.
    pub async fn get_shadow(&self, did: &str) -> Result<Option<ShadowRow>> {
        let sql = "SELECT * FROM device_shadows WHERE did = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_optional(p).await?))
    }

    /// Every shadow whose desired state is not empty.
    pub async fn desired_shadows(&self) -> Result<Vec<ShadowRow>> {
        let sql = "SELECT * FROM device_shadows WHERE desired <> '{}' ORDER BY did";
        Ok(with_db!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Write the desired state of `did` if its version is still `expected` (`0`: no shadow yet).
    /// Returns the new version, or `None` when someone wrote in between (read again and retry).
    pub async fn write_desired(
        &self,
        did: &str,
        desired: &str,
        expected: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let insert = "INSERT INTO device_shadows (did, desired, version, updated_at) \
                      VALUES ($1, $2, 1, $3) ON CONFLICT (did) DO NOTHING RETURNING version";
        let update =
            "UPDATE device_shadows SET desired = $1, version = version + 1, updated_at = $2 \
                      WHERE did = $3 AND version = $4 RETURNING version";
        Ok(with_db!(self, p => {
            if expected == 0 {
                sqlx::query_scalar(insert).bind(did).bind(desired).bind(now)
                    .fetch_optional(p).await?
            } else {
                sqlx::query_scalar(update).bind(desired).bind(now).bind(did).bind(expected)
                    .fetch_optional(p).await?
            }
        }))
    }
}
