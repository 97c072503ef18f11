//! `cargo xtask`: kbz developer tasks, one module per command; `main` only parses and dispatches.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod bench_fleet;
mod docs_cli;
mod e2e;
mod failover;
mod lab;
mod render;
mod snapshots;

/// kbz developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One subcommand per task module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Throwaway Debian 12 hosts (systemd-nspawn + network namespaces) for end-to-end tests.
    Lab(lab::Args),
    /// Measurements for closing notes (`plan`).
    Bench(bench::Args),
    /// The real installer against a fresh 3-host lab (root only; CI runs it).
    E2e(e2e::Args),
    /// Runs a kbz-faults scenario against the running lab N times (lost writes, gaps, leaders).
    Failover(failover::Args),
    /// Shell completions and man pages of every binary into OUTDIR (completions/, man/man1/).
    DocsCli(docs_cli::Args),
    /// Render every component's config files for an inventory (default: the example).
    RenderConfigs(render::Args),
    /// Lists the snapshot files no test used (after `cargo test` with
    /// INSTA_SNAPSHOT_REFERENCES_FILE set) and fails when there are any.
    StaleSnapshots(snapshots::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Bench(args) => bench::run(args),
        Command::E2e(args) => e2e::run(args),
        Command::DocsCli(args) => docs_cli::run(args),
        Command::RenderConfigs(args) => render::run(args),
        Command::Failover(args) => failover::run(args),
        Command::StaleSnapshots(args) => snapshots::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
