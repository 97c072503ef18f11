//! The options every kbz binary takes, flattened into each binary's clap parser.

use clap::Args;
use std::path::PathBuf;

/// Options shared by every binary (global: accepted before or after a subcommand).
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Inventory (servers.tsv). kbz-install without it plans the bundled example (dry-run).
    #[arg(short, long, global = true)]
    pub inventory: Option<PathBuf>,
    /// Cluster settings (kbz.toml); default: kbz.toml next to the inventory.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// State directory (secrets, journal, logs); default: .kbz next to the inventory.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
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
