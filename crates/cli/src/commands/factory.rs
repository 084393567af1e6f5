//! `rampart factory`: device identities for production lines, written straight into the data
//! directory's store.

use crate::common::{load_config, open_core, AnyResult, DataArgs};
use clap::Subcommand;
use rampart_core::audit::Actor;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum FactoryCmd {
    /// Issue a batch of one-device-one-secret identities; writes `serial,device_secret` rows.
    Issue {
        #[command(flatten)]
        data: DataArgs,
        /// Product key the identities belong to.
        #[arg(long)]
        product: String,
        /// How many identities to issue.
        #[arg(long)]
        count: usize,
        /// CSV file to write (made mode 0600: it holds the device secrets).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add MAC/IMEI ids (one per line) to a product's allowlist.
    Allow {
        #[command(flatten)]
        data: DataArgs,
        /// Product key whose allowlist grows.
        #[arg(long)]
        product: String,
        /// Text file of ids, one per line; blank lines and lines starting with `#` are skipped.
        #[arg(long)]
        file: PathBuf,
    },
}

pub(crate) async fn run(cmd: FactoryCmd) -> AnyResult {
    match cmd {
        FactoryCmd::Issue {
            data,
            product,
            count,
            out,
        } => {
            let cfg = load_config(&data)?;
            let core = open_core(&cfg).await?;
            let (batch, ids) = core
                .factory_issue(&product, count, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?;
            let mut text = String::from("serial,device_secret\n");
            for i in &ids {
                text.push_str(&format!("{},{}\n", i.serial, i.secret.expose()));
            }
            rampart_core::secret::write_private(&out, text.as_bytes())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            println!(
                "issued batch {batch}: {count} identities written to {} (mode 0600)",
                out.display()
            );
            Ok(())
        }
        FactoryCmd::Allow {
            data,
            product,
            file,
        } => {
            let cfg = load_config(&data)?;
            let core = open_core(&cfg).await?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ids: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            let n = core
                .allowlist_add(&product, &ids, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?;
            println!("allowlist of {product}: {n} new of {} submitted", ids.len());
            Ok(())
        }
    }
}
