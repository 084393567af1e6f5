//! The one Rampart binary: parses the command line and hands each subcommand to its module in
//! `commands`. No domain logic and no wiring live here.

mod commands;
mod common;
mod http;
mod output;

use clap::{Parser, Subcommand};
use commands::{admin, audit, backup, config, device, events, factory, product, serve, status};
use common::AnyResult;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: a self-hostable, secure IoT device cloud"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server: MQTT gateway and HTTP API.
    Serve(serve::ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
    /// Products: list, show and create them.
    Product {
        #[command(subcommand)]
        cmd: product::ProductCmd,
    },
    /// Factory identities: batches and allowlists.
    Factory {
        #[command(subcommand)]
        cmd: factory::FactoryCmd,
    },
    /// Devices: list, show and command them, or simulate some.
    Device {
        #[command(subcommand)]
        cmd: device::DeviceCmd,
    },
    /// Live device events of the running server, in the terminal.
    Events {
        #[command(subcommand)]
        cmd: events::EventsCmd,
    },
    /// Admin tokens: named ones through the API, and recovery from the data directory.
    Admin {
        #[command(subcommand)]
        cmd: admin::AdminCmd,
    },
    /// What the data directory's server is doing: version, listeners, connections, store.
    Status(status::StatusArgs),
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Write an encrypted backup of the data directory (database and uploads) while the server runs.
    Backup(backup::BackupArgs),
    /// Restore a backup into a data directory that holds the backup's master.key.
    Restore(backup::RestoreArgs),
    /// Load generator: connect, ingest and command scenarios against Rampart or any MQTT broker.
    Bench {
        #[command(subcommand)]
        cmd: rampart_bench::BenchCmd,
    },
}

/// jemalloc, with background threads that give freed pages back to the system (see
/// `rampart-alloc`): the server's memory follows its live connections, not the high-water mark of
/// a connection storm.
#[global_allocator]
static GLOBAL: rampart_alloc::Jemalloc = rampart_alloc::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> AnyResult {
    match cli.cmd {
        Cmd::Serve(a) => serve::run(a).await,
        Cmd::Config { cmd } => config::run(cmd),
        Cmd::Product { cmd } => product::run(cmd).await,
        Cmd::Factory { cmd } => factory::run(cmd).await,
        Cmd::Device { cmd } => device::run(cmd).await,
        Cmd::Events { cmd } => events::run(cmd).await,
        Cmd::Admin { cmd } => admin::run(cmd).await,
        Cmd::Status(a) => status::run(a).await,
        Cmd::Audit { cmd } => audit::run(cmd).await,
        Cmd::Backup(a) => backup::backup(a).await,
        Cmd::Restore(a) => backup::restore(a),
        Cmd::Bench { cmd } => rampart_bench::run(cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every argument says what it is for in `--help`, down the whole tree.
    #[test]
    fn every_command_and_argument_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "rampart", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} --{id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help" && sub.get_about().is_none() {
                missing.push(p.clone());
            }
            walk(sub, &p, missing);
        }
    }
}
