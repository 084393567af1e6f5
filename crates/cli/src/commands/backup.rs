//! `rampart backup` and `rampart restore`: an encrypted copy of a data directory's database and
//! uploads, made while the server runs, and its restore into a directory holding the same key.

use crate::common::{load_config, open_core, AnyResult, DataArgs};
use clap::Args;
use rampart_core::secret::MasterKey;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The backup file to write (refused when it exists). Encrypted with a key derived from the
    /// data directory's master.key, which the file does not contain.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The backup file to read.
    #[arg(long = "in")]
    input: PathBuf,
}

pub(crate) async fn backup(a: BackupArgs) -> AnyResult {
    if a.out.exists() {
        return Err(format!("{} exists already", a.out.display()));
    }
    let cfg = load_config(&a.data)?;
    let core = open_core(&cfg).await?;
    let partial = a.out.with_extension("partial");
    let file = open_new(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let res = core
        .backup(std::io::BufWriter::new(file), &cfg.data_dir, &cfg.data_dir)
        .await;
    core.close_store().await;
    let summary = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.to_string());
        }
    };
    std::fs::rename(&partial, &a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    println!(
        "backup written to {}: database {} bytes, {} uploaded files ({} bytes)",
        a.out.display(),
        summary.database_bytes,
        summary.files,
        summary.file_bytes
    );
    Ok(())
}

pub(crate) fn restore(a: RestoreArgs) -> AnyResult {
    let cfg = load_config(&a.data)?;
    if !cfg.store.url.is_empty() {
        return Err(
            "`rampart restore` restores SQLite data directories only so far (store.url is set)"
                .into(),
        );
    }
    let dir = &cfg.data_dir;
    let key_path = dir.join("master.key");
    if !key_path.exists() {
        return Err(format!(
            "{} holds no master.key: copy the master.key of the server the backup was made on \
             into it (mode 0600) first",
            dir.display()
        ));
    }
    let (key, _) = MasterKey::load_or_create(&key_path).map_err(|e| e.to_string())?;
    let input = std::fs::File::open(&a.input).map_err(|e| format!("{}: {e}", a.input.display()))?;
    let summary = rampart_core::backup::restore(&key, std::io::BufReader::new(input), dir)
        .map_err(|e| e.to_string())?;
    println!(
        "restored into {}: database {} bytes, {} uploaded files ({} bytes)",
        dir.display(),
        summary.database_bytes,
        summary.files,
        summary.file_bytes
    );
    Ok(())
}

fn open_new(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}
