//! Stand-alone front end with the same shape as the `rampart` binary's wiring
//! (`rampart bench ...`), so the crate can be run and its multi-process mode exercised on its own:
//!
//! ```sh
//! cargo run --release -p rampart-bench --example rampart-bench -- bench connect --target 127.0.0.1:1883 --connections 1000
//! ```

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rampart-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load generator.
    Bench {
        #[command(subcommand)]
        cmd: rampart_bench::BenchCmd,
    },
}

fn main() -> std::process::ExitCode {
    let Cmd::Bench { cmd } = Cli::parse().cmd;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(rampart_bench::run(cmd)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
