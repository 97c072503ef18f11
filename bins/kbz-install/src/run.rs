//! The subcommands: install (and dry-run), uninstall, validate, explain, rollback, notify test.
//! Each returns an exit code from [`crate::exit`].

use kbz_core::engine::{Mode, RollbackOutcome};
use kbz_core::executor::{Connector, ExecError, Executor};
use kbz_core::plan::Redactor;
use kbz_core::{Context, Engine, EngineError, Host, RunOptions};
use kbz_errors::{Code, Diagnostic, HasCode};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use kbz_notify::{Event, Notifiers};

use crate::inputs::{self, Inputs};
use crate::{exit, ui, Global};

use kbz_stack::components;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Without a runtime nothing can run; this is an environment failure, not input.
            eprintln!("kbz-install: cannot start the async runtime: {e}");
            std::process::exit(i32::from(exit::FAILED));
        }
    }
}

pub fn explain(code: &str, g: &Global) -> u8 {
    match kbz_errors::explain(code) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(e) => {
            ui::diagnostics(&[e.to_diagnostic()], g.json);
            exit::INPUT
        }
    }
}

pub fn validate(g: &Global) -> u8 {
    match inputs::load(g) {
        Ok(i) => {
            let what = if i.bundled {
                "bundled example inventory"
            } else {
                "inventory"
            };
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "hosts": i.inventory.hosts.len()})
                );
            } else {
                println!(
                    "{what} {} is valid: {} hosts",
                    i.inventory.path,
                    i.inventory.hosts.len()
                );
            }
            exit::OK
        }
        Err(d) => {
            ui::diagnostics(&d, g.json);
            exit::INPUT
        }
    }
}

/// Plans every host as fresh without connecting (the bundled example, `--offline`).
#[derive(Debug)]
struct Offline;

#[async_trait::async_trait]
impl Connector for Offline {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        Err(ExecError::Unreachable {
            host: host.ip.to_string(),
            port: host.ssh_port,
            reason: "offline plan: not contacted".into(),
        })
    }
}

fn connector(i: &Inputs, g: &Global) -> Result<Arc<dyn Connector>, u8> {
    if i.bundled || g.offline {
        return Ok(Arc::new(Offline));
    }
    let mut opts = kbz_exec::ssh::SshOptions::from_config(&i.config).map_err(|e| {
        ui::diagnostics(&[e.to_diagnostic()], g.json);
        exit::INPUT
    })?;
    opts.accept_new_host_keys = g.accept_new_host_keys;
    Ok(Arc::new(kbz_exec::ssh::SshConnector::new(opts)))
}

fn prepare(g: &Global, dry_run: bool) -> Result<(Inputs, Context, Notifiers), u8> {
    let i = inputs::load(g).map_err(|d| {
        ui::diagnostics(&d, g.json);
        exit::INPUT
    })?;
    let names = components()
        .iter()
        .flat_map(|c| c.secret_names())
        .collect::<Vec<_>>();
    let secrets = inputs::secrets(&i, names, !dry_run).map_err(|d| {
        ui::diagnostics(&[d], g.json);
        exit::INPUT
    })?;
    let redactor = Redactor::new(secrets.values().map(|s| s.expose().to_string()));
    ui::mask_secrets(redactor.clone());
    if let Some(dir) = &i.state_dir {
        ui::init_log(dir, g.verbose, redactor);
    }
    let notifiers = Notifiers::new(&i.config.notify, &secrets)
        .map_err(|e| {
            ui::diagnostics(&[e.to_diagnostic()], g.json);
            exit::INPUT
        })?
        .with_server(&i.config.cluster.name);
    let ctx = Context::new(i.inventory.clone(), i.config.clone(), secrets);
    Ok((i, ctx, notifiers))
}

pub fn install(g: &Global, mode: Mode) -> u8 {
    let bundled = g.inventory.is_none();
    let dry_run = g.dry_run || g.offline || bundled;
    if bundled && !g.json {
        eprintln!("kbz-install: no --inventory given: planning the bundled example inventory (examples/servers.tsv) in dry-run mode, offline; nothing is contacted or changed.");
    }
    let (i, ctx, notifiers) = match prepare(g, dry_run) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = RunOptions {
        dry_run,
        forks: g.forks.unwrap_or(i.config.cluster.forks).max(1),
        start_from_module: g.start_from_module,
        only: g.only.clone(),
        skip_cleanup: g.skip_cleanup,
        mode,
        state_dir: i.state_dir.clone(),
    };
    let rt = runtime();
    let bars = Arc::new(ui::Bars::new(g.json));
    let connector = match connector(&i, g) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = Engine::new(ctx, components(), connector).with_progress(bars.clone());

    if !dry_run && !g.yes {
        if !std::io::stdin().is_terminal() {
            let d = Diagnostic::new(
                Code::E010,
                "refusing to change hosts without confirmation: stdin is not a terminal",
            )
            .hint("pass --yes to apply, or --dry-run to see the plan");
            ui::diagnostics(&[d], g.json);
            return exit::INPUT;
        }
        let plan = match rt.block_on(engine.run(&RunOptions {
            dry_run: true,
            ..opts.clone()
        })) {
            Ok(r) => r.plan,
            Err(e) => return fail(&e, g),
        };
        bars.clear();
        if plan.operations() == 0 {
            println!("Nothing to do: every host is already in the desired state.");
            return exit::OK;
        }
        if !ui::confirm(&format!(
            "{} operations will change {} hosts. Apply? (see them with --dry-run)",
            plan.operations(),
            plan.hosts_changed()
        )) {
            eprintln!("kbz-install: nothing was changed.");
            return exit::OK;
        }
    }

    // Operators hear about real runs where they already look; a dry-run stays quiet.
    let notifiers = Some(notifiers).filter(|n| !dry_run && n.has_enabled());
    let cluster = i.config.cluster.name.clone();
    tracing::info!(dry_run, ?mode, hosts = i.inventory.hosts.len(), "run start");
    let started = Instant::now();
    if let Some(n) = &notifiers {
        let modules: Vec<&str> = engine
            .select(&opts)
            .map(|c| c.iter().map(|c| c.name()).collect())
            .unwrap_or_default();
        let event = Event::install_started(&cluster, i.inventory.hosts.len(), &modules);
        warn_failed(rt.block_on(n.send(&event)));
    }
    let result = rt.block_on(engine.run(&opts));
    bars.clear();
    match result {
        Ok(report) => {
            tracing::info!(
                changed = report.changed(),
                ms = started.elapsed().as_millis() as u64,
                "run done"
            );
            if let Some(n) = &notifiers {
                let event = Event::install_succeeded(&cluster, started.elapsed(), report.changed());
                warn_failed(rt.block_on(n.send(&event)));
            }
            ui::report(&report, started.elapsed(), g.json);
            exit::OK
        }
        Err(e) => {
            if let Some(n) = &notifiers {
                let event = Event::install_failed(&cluster, &e.diagnostic(), started.elapsed());
                warn_failed(rt.block_on(n.send(&event)));
            }
            fail(&e, g)
        }
    }
}

/// A notification that could not be delivered is a warning, never a failure of the run.
fn warn_failed(deliveries: Vec<kbz_core::notifier::Delivery>) {
    for d in deliveries {
        if let Err(reason) = d.result {
            tracing::warn!(target_name = %d.target, %reason, "notification failed");
            eprintln!("warning: notification `{}` failed: {reason}", d.target);
        }
    }
}

fn fail(e: &EngineError, g: &Global) -> u8 {
    tracing::error!(code = %e.code(), error = %e, "run failed");
    if let EngineError::Failed { report, .. } = e {
        if !g.json {
            ui::host_table(report);
        }
    }
    ui::diagnostics(&[e.diagnostic()], g.json);
    match e {
        EngineError::Usage(_) => exit::INPUT,
        EngineError::Connect(_) => exit::UNREACHABLE,
        EngineError::Failed {
            rollback: RollbackOutcome::Incomplete(_),
            ..
        }
        | EngineError::RollbackIncomplete(_) => exit::ROLLBACK_INCOMPLETE,
        EngineError::Journal(j) if j.code() == Code::E010 => exit::INPUT,
        _ => exit::FAILED,
    }
}

pub fn rollback(g: &Global) -> u8 {
    if g.inventory.is_none() {
        let d = Diagnostic::new(
            Code::E010,
            "rollback needs the --inventory of the failed run",
        )
        .hint("kbz-install rollback --inventory servers.tsv");
        ui::diagnostics(&[d], g.json);
        return exit::INPUT;
    }
    let (i, ctx, _) = match prepare(g, true) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = RunOptions {
        state_dir: i.state_dir.clone(),
        ..RunOptions::default()
    };
    let connector = match connector(&i, g) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = Engine::new(ctx, components(), connector);
    match runtime().block_on(engine.rollback_last(&opts)) {
        Ok(steps) => {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"rolled_back": true, "steps": steps})
                );
            } else {
                println!("Rolled back: {steps} undo step(s) applied; every host is back to its state before the failed run.");
            }
            exit::OK
        }
        Err(e) => fail(&e, g),
    }
}

pub fn notify_test(g: &Global) -> u8 {
    let (_, _, notifiers) = match prepare(g, true) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report = runtime().block_on(notifiers.test_all());
    if report.results.is_empty() {
        println!("No [[notify]] targets in the config: nothing to test.");
        return exit::OK;
    }
    for line in report.lines() {
        println!("{line}");
    }
    if report.all_delivered() {
        exit::OK
    } else {
        exit::FAILED
    }
}
