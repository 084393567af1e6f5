//! `rampart audit`: the audit log, read from the data directory.

use crate::common::{load_config, open_core, AnyResult, DataArgs};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCmd {
    /// Recompute the audit hash chain; name the first tampered entry and fail if there is one.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

pub(crate) async fn run(cmd: AuditCmd) -> AnyResult {
    let AuditCmd::Verify { data } = cmd;
    let cfg = load_config(&data)?;
    let core = open_core(&cfg).await?;
    let r = core.verify_audit_chain().await.map_err(|e| e.to_string());
    core.close_store().await;
    let r = r?;
    let older = if r.unchained > 0 {
        format!(
            "; {} older entries predate the chain and are not verifiable",
            r.unchained
        )
    } else {
        String::new()
    };
    match r.first_bad {
        None => {
            println!("audit chain intact: {} entries verified{older}", r.entries);
            Ok(())
        }
        Some(b) => Err(format!(
            "audit chain broken at entry {}: {} ({} entries before it verified{older})",
            b.id, b.reason, r.entries
        )),
    }
}
