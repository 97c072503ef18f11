//! Loads the run's inputs: inventory and config (from files, or the bundled example), the
//! validation of both together, and the secrets file in the state directory.

use kbz_core::{Config, Inventory, Secrets};
use kbz_errors::Diagnostic;
use std::path::{Path, PathBuf};

use crate::Common;

const EXAMPLE_INVENTORY: &str = include_str!("../../../examples/servers.tsv");
const EXAMPLE_CONFIG: &str = include_str!("../../../examples/kbz.toml");

/// Everything a run reads.
#[derive(Debug)]
pub struct Inputs {
    /// The hosts (servers.tsv).
    pub inventory: Inventory,
    /// The settings (kbz.toml, or the defaults).
    pub config: Config,
    /// `None` for the bundled example (nothing is written anywhere).
    pub state_dir: Option<PathBuf>,
    /// The bundled example inventory is in use.
    pub bundled: bool,
}

/// Loads and validates inventory and config, reporting every problem at once.
pub fn load(g: &Common) -> Result<Inputs, Vec<Diagnostic>> {
    let Some(inv_path) = &g.inventory else {
        let inventory = Inventory::parse(
            "examples/servers.tsv (bundled)",
            EXAMPLE_INVENTORY.as_bytes(),
        );
        let config = Config::parse("examples/kbz.toml (bundled)", EXAMPLE_CONFIG);
        return finish(inventory, config, "examples/kbz.toml (bundled)", None, true);
    };
    let dir = inv_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config_path = g.config.clone().unwrap_or_else(|| dir.join("kbz.toml"));
    let inventory = Inventory::load(inv_path);
    let config = if g.config.is_some() {
        Config::load(&config_path)
    } else {
        Config::load_or_default(&config_path)
    };
    let state_dir = g.state_dir.clone().unwrap_or_else(|| dir.join(".kbz"));
    finish(
        inventory,
        config,
        &config_path.display().to_string(),
        Some(state_dir),
        false,
    )
}

fn finish(
    inventory: Result<Inventory, Vec<Diagnostic>>,
    config: Result<Config, Vec<Diagnostic>>,
    config_shown: &str,
    state_dir: Option<PathBuf>,
    bundled: bool,
) -> Result<Inputs, Vec<Diagnostic>> {
    match (inventory, config) {
        (Ok(inventory), Ok(config)) => {
            let problems = kbz_core::validate::validate(&inventory, &config, config_shown);
            if problems.is_empty() {
                Ok(Inputs {
                    inventory,
                    config,
                    state_dir,
                    bundled,
                })
            } else {
                Err(problems)
            }
        }
        (i, c) => Err(i
            .err()
            .unwrap_or_default()
            .into_iter()
            .chain(c.err().unwrap_or_default())
            .collect()),
    }
}

/// Loads the secrets file (or an in-memory store) and generates every secret the components
/// declare. Saved (0600) only when `persist` is set, so a dry-run writes nothing.
pub fn secrets(
    inputs: &Inputs,
    names: impl IntoIterator<Item = String>,
    persist: bool,
) -> Result<Secrets, Diagnostic> {
    let mut s = match &inputs.state_dir {
        Some(dir) => Secrets::load(&dir.join("secrets.toml"))?,
        None => Secrets::in_memory(),
    };
    for n in names {
        s.get_or_generate(&n);
    }
    if persist {
        s.save()?;
    }
    Ok(s)
}

/// The cluster's CA and member certificates when `[security] tls` is on (`None` otherwise):
/// kept in `STATE_DIR/tls` (made on first use, saved only when `persist` is set), in memory
/// without a state directory.
pub fn pki(inputs: &Inputs, persist: bool) -> Result<Option<kbz_core::pki::Pki>, Diagnostic> {
    use kbz_core::pki::{Member, Pki};
    use kbz_errors::HasCode;
    if !inputs.config.security.tls {
        return Ok(None);
    }
    let members = Member::of_inventory(&inputs.inventory, &inputs.config);
    let cluster = inputs.config.cluster.slug();
    let pki = match &inputs.state_dir {
        Some(dir) => Pki::load_or_create(&dir.join("tls"), &cluster, &members, persist),
        None => Pki::in_memory(&cluster, &members),
    };
    pki.map(Some).map_err(|e| e.to_diagnostic())
}
