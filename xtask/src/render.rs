//! `cargo xtask render-configs [--out DIR]`: renders every config file of every component for
//! an inventory (the bundled example by default) into DIR/HOST/PATH, with placeholder
//! secrets, so configs can be read, diffed and fed to the daemons' validators.

use anyhow::{anyhow, Result};
use fs_err as fs;
use kbz_core::{Config, Context, Inventory, Resource, Secrets};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `render-configs` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (one folder per host).
    #[arg(long, default_value = "target/rendered")]
    out: PathBuf,
    /// Inventory (default: examples/servers.tsv).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Config (default: examples/kbz.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let inv_path = args
        .inventory
        .unwrap_or_else(|| root.join("examples/servers.tsv"));
    let cfg_path = args
        .config
        .unwrap_or_else(|| root.join("examples/kbz.toml"));
    let inventory = Inventory::load(&inv_path).map_err(diagnostics)?;
    let config = Config::load(&cfg_path).map_err(diagnostics)?;
    let count = render_all(inventory, config, &args.out)?;
    println!("rendered {count} files into {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Renders every present file of every component into `out/HOST/PATH`; returns the count.
pub fn render_all(inventory: Inventory, config: Config, out: &Path) -> Result<usize> {
    let components = kbz_stack::components();
    let secrets = Secrets::placeholders(components.iter().flat_map(|c| c.secret_names()));
    let ctx = Context::new(inventory, config, secrets);
    if out.exists() {
        fs::remove_dir_all(out)?;
    }
    let mut count = 0;
    for comp in &components {
        for host in ctx.inventory.hosts.iter().filter(|h| comp.applies_to(h)) {
            let resources = comp
                .desired(&ctx, host)
                .map_err(|e| anyhow!("{} on {}: {e}", comp.name(), host.hostname))?;
            for r in resources {
                if let Resource::File {
                    path,
                    content,
                    present: true,
                    ..
                } = r
                {
                    let dest = out.join(&host.hostname).join(path.trim_start_matches('/'));
                    if let Some(dir) = dest.parent() {
                        fs::create_dir_all(dir)?;
                    }
                    fs::write(&dest, content)?;
                    count += 1;
                }
            }
        }
    }
    Ok(count)
}

fn diagnostics(ds: Vec<kbz_errors::Diagnostic>) -> anyhow::Error {
    anyhow!(ds
        .iter()
        .map(|d| d.render_plain())
        .collect::<Vec<_>>()
        .join("\n"))
}
