//! `rampart config`: configuration helpers that need no data directory.

use crate::common::AnyResult;
use clap::Subcommand;
use rampart_server::Config;

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCmd {
    /// Print the default configuration as TOML.
    Generate,
}

pub(crate) fn run(cmd: ConfigCmd) -> AnyResult {
    match cmd {
        ConfigCmd::Generate => {
            let text = toml::to_string_pretty(&Config::default()).map_err(|e| e.to_string())?;
            print!("{text}");
            Ok(())
        }
    }
}
