//! `kbz-embed-example`: an embedding tool's whole main. Loads the inventory and kbz.toml
//! (validated together), builds an [`Engine`] over the SSH connector with the tool's own
//! component, runs the plan (install, uninstall or a dry-run of either), prints the run
//! report (JSON with `--json`) and maps the outcome to an exit code. `--health` asks the
//! component's health checks instead.
//!
//! Exit codes: 0 done (or healthy), 1 the run failed (and was rolled back) or a check
//! failed, 64 bad input.

use clap::Parser;
use kbz_core::engine::Mode;
use kbz_core::errors::{Diagnostic, HasCode};
use kbz_core::{Component, Connector, Context, Engine, RunOptions, Secrets};
use kbz_embed_example::NodeExporter;
use kbz_exec::{SshConnector, SshOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Installs Debian's prometheus-node-exporter on every inventory host, bound to the host's
/// private address, through kbz's engine.
#[derive(Debug, Parser)]
#[command(name = "kbz-embed-example", version)]
struct Args {
    /// The inventory (servers.tsv).
    #[arg(long, value_name = "FILE")]
    inventory: PathBuf,
    /// kbz.toml ([ssh] settings); default: kbz.toml next to the inventory, if there is one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the run journal and the run lock live.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Plan only: probes stay read-only, nothing changes.
    #[arg(long)]
    dry_run: bool,
    /// Remove the exporter instead of installing it.
    #[arg(long)]
    uninstall: bool,
    /// Run the component's health checks instead of a plan.
    #[arg(long, conflicts_with_all = ["dry_run", "uninstall"])]
    health: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Record the host keys of hosts missing from known_hosts (printed on stderr).
    #[arg(long)]
    accept_new_host_keys: bool,
}

const INPUT: u8 = 64;
const FAILED: u8 = 1;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { INPUT } else { 0 });
        }
    };
    ExitCode::from(run(&args))
}

fn show(diags: &[Diagnostic], json: bool) {
    for d in diags {
        if json {
            eprintln!("{}", d.render_json());
        } else {
            eprintln!("{}", d.render_plain());
        }
    }
}

fn run(args: &Args) -> u8 {
    // 1. Inputs: the inventory and kbz.toml, every problem of both reported at once.
    let config = args.config.clone().or_else(|| {
        let next_to = args
            .inventory
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("kbz.toml");
        next_to.is_file().then_some(next_to)
    });
    let (inventory, config) =
        match kbz_core::validate::load_and_validate(&args.inventory, config.as_deref()) {
            Ok(x) => x,
            Err(diags) => {
                show(&diags, args.json);
                return INPUT;
            }
        };

    // 2. The connector: SSH with host keys verified against known_hosts.
    let opts = match SshOptions::from_config(&config) {
        Ok(o) => o.accept_new_host_keys(args.accept_new_host_keys),
        Err(e) => {
            show(&[e.to_diagnostic()], args.json);
            return INPUT;
        }
    };
    let mut opts = opts;
    opts.on_new_host_key = Some(kbz_exec::ssh::KeyRecorded(Arc::new(|k| {
        eprintln!(
            "kbz-embed-example: recorded the host key of {}: {} {}",
            k.host, k.key_type, k.fingerprint
        );
    })));
    let connector: Arc<dyn Connector> = Arc::new(SshConnector::new(opts));

    // 3. The context and the engine. This component declares no secrets; one that does
    // lists them in `secret_names` and the tool generates them (`Secrets::get_or_generate`)
    // into a 0600 file (`Secrets::load` + `save`) before building the context.
    let components: Vec<Arc<dyn Component>> = vec![Arc::new(NodeExporter)];
    let ctx = Context::new(inventory, config, Secrets::in_memory());
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kbz-embed-example: cannot start the async runtime: {e}");
            return FAILED;
        }
    };
    if args.health {
        return rt.block_on(health(&ctx, &components, connector.as_ref(), args.json));
    }
    let engine = Engine::new(ctx, components, connector);

    // 4. The plan, applied (or only shown with --dry-run).
    let opts = RunOptions {
        dry_run: args.dry_run,
        mode: if args.uninstall {
            Mode::Uninstall
        } else {
            Mode::Install
        },
        state_dir: Some(args.state_dir.clone()),
        ..RunOptions::default()
    };
    match rt.block_on(engine.run(&opts)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("kbz-embed-example: cannot print the report: {e}");
                        return FAILED;
                    }
                }
            } else if report.dry_run {
                print!("{}", report.plan.render());
            } else {
                let s = &report.summary;
                println!(
                    "{} operation(s) applied, {} resource(s) already in place, on {} host(s)",
                    s.changed,
                    s.ok,
                    report.hosts.len()
                );
            }
            0
        }
        Err(e) => {
            show(&[e.diagnostic()], args.json);
            FAILED
        }
    }
}

/// Connects to every host and runs the component's probes (one round trip per host).
async fn health(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    connector: &dyn Connector,
    json: bool,
) -> u8 {
    let mut hosts = Vec::new();
    for h in &ctx.inventory.hosts {
        hosts.push((h.clone(), connector.connect(h).await));
    }
    let collected = kbz_core::health_run::collect(ctx, components, hosts).await;
    let healthy = collected.checks.iter().all(|c| c.is_ok());
    if json {
        println!(
            "{}",
            serde_json::json!({ "healthy": healthy, "checks": collected.checks })
        );
    } else {
        for c in &collected.checks {
            println!("{} {} {}: {}", c.status, c.host, c.check, c.detail);
        }
    }
    if healthy {
        0
    } else {
        FAILED
    }
}
