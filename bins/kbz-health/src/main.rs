//! kbz-health: parses arguments, calls kbz-cli's health library, and returns a documented
//! exit code (0 healthy, 1 degraded, 2 down, 3 unreachable, 64 bad input; see `EXIT CODES`
//! in `--help`).

use clap::{Parser, Subcommand};
use kbz_cli::health::command::{self, Options};
use kbz_cli::{exit, Common};
use std::path::PathBuf;
use std::process::ExitCode;

/// Checks a kbz cluster: one row per check (ok / degraded / down, with the E-code and fix),
/// one batched round trip per host.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-health",
    version,
    after_help = exit::help(
        "kbz-health: 0 healthy, 1 degraded (redundancy lost, every service up), 2 down (a service is unavailable; only that), 3 no host could be asked, 64 bad input or a usage error (with an `errors` JSON under --json)."
    )
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve GET /metrics (Prometheus text format; every scrape runs the checks).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9478")]
        listen: String,
    },
    /// A systemd timer that runs kbz-health every minute (transition alerts, --prometheus).
    Timer {
        #[command(subcommand)]
        action: TimerAction,
    },
}

#[derive(Debug, Subcommand)]
enum TimerAction {
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

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let (c, o) = (&cli.common, &cli.options);
    let code = match &cli.command {
        None => command::once(c, o),
        Some(Command::Serve { listen }) => command::serve(c, o, listen),
        Some(Command::Timer {
            action: TimerAction::Install { root, every },
        }) => command::timer_install(c, o, root, every),
        Some(Command::Timer {
            action: TimerAction::Remove { root },
        }) => command::timer_remove(c, root),
    };
    ExitCode::from(code)
}
