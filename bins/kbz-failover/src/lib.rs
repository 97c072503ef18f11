//! kbz-failover's command line as clap types (`list`, `run`): parsed by the binary, and
//! turned into shell completions and man pages by `cargo xtask docs-cli`.

use clap::{Parser, Subcommand};
use kbz_cli::{exit, Common};

/// Injects real faults into a kbz cluster under write load and checks what they cost: lost
/// acknowledged writes, the longest write gap, the time to a new leader, against the
/// `[failover]` budgets of kbz.toml.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-failover",
    version,
    after_help = exit::help(
        "kbz-failover: 0 every run inside its budget; 1 a run outside its budget (E071 lost writes, E072 write gap) or a failed run; 2 a cluster kbz-health does not call healthy (nothing injected); 3 hosts or the VIP unreachable (nothing injected); 64 bad input (nothing injected)."
    )
)]
pub struct Cli {
    /// The options every kbz binary takes.
    #[command(flatten)]
    pub common: Common,
    /// The subcommand (none: the default action).
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every scenario with its fault and budget.
    List,
    /// Runs a scenario: healthy check, confirmation, writers, fault, heal, read-back, budgets.
    Run {
        /// The scenario (see `list`).
        scenario: String,
        /// How many runs.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        /// Seconds the fault lasts (a partition or a power cut).
        #[arg(long, default_value_t = 35)]
        duration: u64,
        /// Concurrent writers through the VIP.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// The clap command of kbz-failover (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
