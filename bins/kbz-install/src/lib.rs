//! kbz-install's command line as clap types (install, uninstall, rollback, validate, explain,
//! menu, notify, cache): parsed by the binary, and turned into shell completions and man pages by
//! `cargo xtask docs-cli`.

use clap::{Parser, Subcommand};
use kbz_cli::{exit, install, Common};

/// Installs the kbz high-availability stack over SSH from one inventory.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-install",
    version,
    after_help = exit::help(
        "With no --inventory, the bundled example inventory is planned in dry-run mode, offline."
    )
)]
pub struct Cli {
    /// The options every kbz binary takes.
    #[command(flatten)]
    pub common: Common,
    /// This binary's own options.
    #[command(flatten)]
    pub options: install::Options,
    /// The subcommand (none: the default action).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one, kbz-install installs (or plans, with --dry-run).
/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory and config and report every problem at once.
    Validate,
    /// Check every host against what its roles need (CPU, memory, disk, OS, clocks, ports,
    /// apt, network), changing nothing; offline it lists the checks.
    Preflight,
    /// Explain an error code (E001-E068, E071-E072, E076-E081) with numbered fixes.
    Explain {
        /// The code, e.g. E002.
        code: String,
    },
    /// Undo the last failed run (its journal in the state directory).
    Rollback,
    /// Remove what kbz installed (modules in reverse order).
    Uninstall,
    /// Interactive menu: modules and their state, hosts, plan, install, health, uninstall.
    Menu,
    /// The controller's download cache of pinned artifacts (STATE_DIR/cache).
    Cache {
        /// What to do with it.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Notification targets.
    Notify {
        /// What to do with it.
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

/// `cache` actions.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Every cached artifact: the pin it belongs to (or `unpinned`), file, size, sha256,
    /// whether its bytes still match it, last modified; the total size.
    List,
    /// Remove cached artifacts no pin of the current config references, and leftover
    /// partial files (with --dry-run: only show them).
    Prune {
        /// Remove every cached artifact, pinned or not.
        #[arg(long)]
        all: bool,
    },
}

/// The clap command of kbz-install (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
