//! kbz-health's command line as clap types (the checks, `serve`, `ports`, `timer`): parsed by the
//! binary, and turned into shell completions and man pages by `cargo xtask docs-cli`.

use clap::{Parser, Subcommand};
use kbz_cli::health::command::Options;
use kbz_cli::{exit, Common};
use std::path::PathBuf;

/// Checks a kbz cluster: one row per check (ok / degraded / down, with the E-code and fix),
/// one batched round trip per host.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-health",
    version,
    after_help = exit::help(
        "kbz-health: 0 healthy, 1 degraded (redundancy lost, every service up), 2 down (a service is unavailable; only that), 3 no host could be asked, 64 bad input or a usage error (with an `errors` JSON under --json). kbz-health ports: 0 every endpoint answers and nothing listens where it should not, 1 a service of kbz listens on an address it should not (E059), 2 an endpoint does not answer, 3 a host could not be asked."
    )
)]
pub struct Cli {
    /// The options every kbz binary takes.
    #[command(flatten)]
    pub common: Common,
    /// This binary's own options.
    #[command(flatten)]
    pub options: Options,
    /// The subcommand (none: the default action).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GET /metrics (Prometheus text format; every scrape runs the checks).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9478")]
        listen: String,
    },
    /// The port map: every endpoint (VIP fronts and members) with its auth, each checked by
    /// connecting from here, and every listener of kbz's services on an address it should
    /// not be on (E059), read from each host in one round trip.
    Ports,
    /// A systemd timer that runs kbz-health every minute (transition alerts, --prometheus).
    Timer {
        /// What to do with it.
        #[command(subcommand)]
        action: TimerAction,
    },
}

/// `timer` actions.
#[derive(Debug, Subcommand)]
pub enum TimerAction {
    /// Write and enable kbz-health.service and kbz-health.timer.
    Install {
        /// Root directory the units go under (etc/systemd/system); systemd is only
        /// reloaded when it is `/`.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// How often (a systemd time span).
        #[arg(long, default_value = "1min")]
        every: String,
    },
    /// Disable and remove them.
    Remove {
        /// Root directory the units are under.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

/// The clap command of kbz-health (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
