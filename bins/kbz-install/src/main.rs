//! kbz-install: parses arguments, calls the kbz libraries, prints, and maps the outcome to a
//! documented exit code (see `EXIT CODES` in `--help`).

mod inputs;
mod run;
mod ui;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in --help and the README.
pub mod exit {
    /// Success (a dry-run that printed its plan included).
    pub const OK: u8 = 0;
    /// The run failed; every host was rolled back (or kept with --skip-cleanup).
    pub const FAILED: u8 = 1;
    /// Invalid input: inventory, config, secrets or command line.
    pub const INPUT: u8 = 2;
    /// Hosts unreachable; nothing was changed.
    pub const UNREACHABLE: u8 = 3;
    /// Rollback incomplete: hosts need attention.
    pub const ROLLBACK_INCOMPLETE: u8 = 4;
}

const AFTER_HELP: &str = "EXIT CODES:
  0  success (a dry-run that printed its plan included)
  1  the run failed; hosts were rolled back (or kept with --skip-cleanup)
  2  invalid input: inventory, config, secrets or command line
  3  hosts unreachable; nothing was changed
  4  rollback incomplete: some hosts need attention (see the listed steps)

With no --inventory, the bundled example inventory is planned in dry-run mode, offline.";

/// Installs the kbz high-availability stack over SSH from one inventory.
#[derive(Debug, Parser)]
#[command(name = "kbz-install", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Inventory (servers.tsv). Without it, the bundled example is planned (dry-run).
    #[arg(short, long, global = true)]
    pub inventory: Option<PathBuf>,
    /// Cluster settings (kbz.toml); default: kbz.toml next to the inventory.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// State directory (secrets, journal, logs); default: .kbz next to the inventory.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Show every operation (with file diffs) without changing anything.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Plan without connecting: every host is planned as fresh.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Resume from module N (1 base, 2 keepalived, ...).
    #[arg(long, value_name = "N", default_value_t = 1, global = true)]
    pub start_from_module: u8,
    /// Run one component only (base, keepalived, ...).
    #[arg(long, value_name = "COMPONENT", global = true)]
    pub only: Option<String>,
    /// On failure keep what was applied instead of rolling back (`kbz-install rollback` later).
    #[arg(long, global = true)]
    pub skip_cleanup: bool,
    /// Hosts worked on concurrently (default: cluster.forks from kbz.toml).
    #[arg(long, global = true)]
    pub forks: Option<usize>,
    /// Do not ask for confirmation before changing hosts.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Accept and record host keys not yet in known_hosts (verify fingerprints first!).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// More output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Subcommands; without one, kbz-install installs (or plans, with --dry-run).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory and config and report every problem at once.
    Validate,
    /// Explain an error code (E001-E060) with numbered fixes.
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
pub enum NotifyAction {
    /// Send a test message to every configured target.
    Test,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match &cli.command {
        Some(Command::Explain { code }) => run::explain(code, &cli.global),
        Some(Command::Validate) => run::validate(&cli.global),
        Some(Command::Rollback) => run::rollback(&cli.global),
        Some(Command::Uninstall) => run::install(&cli.global, kbz_core::engine::Mode::Uninstall),
        Some(Command::Notify {
            action: NotifyAction::Test,
        }) => run::notify_test(&cli.global),
        None => run::install(&cli.global, kbz_core::engine::Mode::Install),
    };
    ExitCode::from(code)
}
