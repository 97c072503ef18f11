//! kbz-backup's command line as clap types: parsed by the binary, and turned into shell
//! completions and man pages by `cargo xtask docs-cli`.

use clap::{Parser, Subcommand};
use kbz_cli::{exit, Common};
use std::path::PathBuf;

/// Backs up every stateful component of a kbz cluster into the repository on the
/// `backup`-role host, verifies, restores and drills the backups, and schedules itself.
#[derive(Debug, Parser)]
#[command(
    name = "kbz-backup",
    version,
    after_help = exit::help(
        "kbz-backup: 0 everything succeeded, 1 a backup, verification, restore, drill or prune failed (E041-E050; a restore refused without --force is E043), 3 the backup host or a member could not be reached, 64 bad input or a usage error (with an `errors` JSON under --json)."
    )
)]
pub struct Cli {
    /// The options every kbz binary takes.
    #[command(flatten)]
    pub common: Common,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup of every component (or one) and store it with its manifest.
    Run {
        /// One component only (etcd, redis, postgres).
        #[arg(long, value_name = "COMPONENT")]
        component: Option<String>,
        /// A full backup.
        #[arg(long, conflicts_with = "diff")]
        full: bool,
        /// A differential backup (PostgreSQL; the others always take a full one).
        #[arg(long)]
        diff: bool,
        /// Prune what retention no longer keeps afterwards (when every backup succeeded).
        #[arg(long)]
        prune: bool,
    },
    /// List the backups in the repository.
    List,
    /// Check every stored backup against its manifest (sha256, size); `--id` also reads it
    /// back and decrypts it.
    Verify {
        /// One backup only.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Restore a component from a backup (refused on a running, healthy cluster without
    /// --force).
    Restore {
        /// The component (etcd, redis, postgres).
        component: String,
        /// The newest backup at or before this time (RFC 3339; UTC without an offset);
        /// PostgreSQL replays WAL up to it.
        #[arg(long, value_name = "TIME", conflicts_with = "id")]
        at: Option<String>,
        /// This backup.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Restore even though the cluster is running and healthy (stops what the dry-run
        /// lists).
        #[arg(long)]
        force: bool,
        /// Print every step the restore would take; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore the latest backup of each component into a scratch instance on the backup
    /// host, compare it with its manifest, remove it.
    Drill {
        /// One component only.
        #[arg(long, value_name = "COMPONENT")]
        component: Option<String>,
    },
    /// Remove the backups retention no longer keeps (`[backup]` keep_full, keep_days).
    Prune,
    /// The cron file (or systemd timers) that run kbz-backup on schedule.
    Schedule {
        /// What to do with it.
        #[command(subcommand)]
        action: ScheduleAction,
    },
}

/// `schedule` actions.
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Write /etc/cron.d/kbz-backup (or the systemd units with --systemd).
    Install {
        /// systemd timers instead of cron.
        #[arg(long)]
        systemd: bool,
        /// Root directory the files go under; systemd is only reloaded when it is `/`.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Remove the cron file and the units.
    Remove {
        /// Root directory the files are under.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Print what is installed.
    Show {
        /// Root directory the files are under.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

/// The clap command of kbz-backup (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
