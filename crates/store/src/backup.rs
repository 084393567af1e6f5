//! Consistent copies of the database for backups: SQLite writes a compacted copy of one snapshot
//! of the file while the server keeps reading and writing (`VACUUM INTO`).

use crate::{Db, Result, Store, StoreError};

impl Store {
    /// Write a consistent copy of the SQLite database to `into` (which must not exist yet).
    /// PostgreSQL is not copied this way: `Unsupported` names what to use instead.
    pub async fn snapshot_to(&self, into: &std::path::Path) -> Result<()> {
        let Db::Sqlite(p) = &self.db else {
            return Err(StoreError::Unsupported(
                "`rampart backup` copies SQLite stores only so far; back PostgreSQL up with pg_dump"
                    .into(),
            ));
        };
        let path = into
            .to_str()
            .ok_or_else(|| StoreError::Unsupported(format!("{} is not UTF-8", into.display())))?;
        sqlx::query("VACUUM INTO $1").bind(path).execute(p).await?;
        Ok(())
    }
}
