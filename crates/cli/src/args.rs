//! The options every kbz binary takes, flattened into each binary's clap parser, and the
//! parse itself: a usage error exits with [`crate::exit::INPUT`] (clap's own code, 2, is
//! kbz-health's "down").

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

/// Parses the command line of binary `C`: `--help` and `--version` print and exit 0, a usage
/// error prints clap's message and exits [`crate::exit::INPUT`]. Output goes through
/// [`crate::ui`], so a closed pipe never panics.
pub fn parse<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    crate::ui::out(&text);
                    std::process::exit(0)
                }
                // A missing subcommand prints the help too, as the usage error it is.
                _ => {
                    crate::ui::err(&text);
                    std::process::exit(i32::from(crate::exit::INPUT))
                }
            }
        }
    }
}
