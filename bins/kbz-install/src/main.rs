//! kbz-install: parses arguments, calls the kbz libraries (kbz-cli's `install` module), and
//! returns a documented exit code (see `EXIT CODES` in `--help`).

use clap::{Parser, Subcommand};
use kbz_cli::{exit, install, Common};
use kbz_core::engine::Mode;
use std::process::ExitCode;

/// Installs the kbz high-availability stack over SSH from one inventory.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-install",
    version,
    after_help = exit::help(
        "With no --inventory, the bundled example inventory is planned in dry-run mode, offline."
    )
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    options: install::Options,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands; without one, kbz-install installs (or plans, with --dry-run).
#[derive(Debug, Subcommand)]
enum Command {
    /// Check the inventory and config and report every problem at once.
    Validate,
    /// Explain an error code (E001-E068, E071-E072) with numbered fixes.
    Explain {
        /// The code, e.g. E002.
        code: String,
    },
    /// Undo the last failed run (its journal in the state directory).
    Rollback,
    /// Remove what kbz installed (modules in reverse order).
    Uninstall,
    /// Notification targets.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
}

/// `notify` actions.
#[derive(Debug, Subcommand)]
enum NotifyAction {
    /// Send a test message to every configured target.
    Test,
}

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let (g, o) = (&cli.common, &cli.options);
    let code = match &cli.command {
        Some(Command::Explain { code }) => install::explain(code, g),
        Some(Command::Validate) => install::validate(g),
        Some(Command::Rollback) => install::rollback(g),
        Some(Command::Uninstall) => install::install(g, o, Mode::Uninstall),
        Some(Command::Notify {
            action: NotifyAction::Test,
        }) => install::notify_test(g),
        None => install::install(g, o, Mode::Install),
    };
    ExitCode::from(code)
}
