//! kbz-install's subcommands: install (and dry-run), uninstall, validate, explain, rollback,
//! notify test. Each returns an exit code from [`crate::exit`].

use clap::Args;
use kbz_core::engine::{Mode, RollbackOutcome, Timing};
use kbz_core::{Engine, EngineError, RunOptions};
use kbz_errors::{Code, Diagnostic, HasCode};
use kbz_notify::Event;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use crate::preflight::{self as pre, Gate};
use crate::session::{self, prepare, warn_failed, Session};
use crate::{connect, exit, inputs, runtime, ui, Common};

use kbz_stack::components;

/// kbz-install's own options (global: before or after a subcommand).
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
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
    /// Install without the preflight checks of the hosts (the summary says they were skipped).
    #[arg(long, global = true)]
    pub skip_preflight: bool,
}

const BIN: &str = "kbz-install";

fn secrets_mode(dry_run: bool) -> session::Secrets {
    if dry_run {
        session::Secrets::InMemory
    } else {
        session::Secrets::Persist
    }
}

/// `kbz-install explain CODE`.
pub fn explain(code: &str, g: &Common) -> u8 {
    match kbz_errors::explain(code) {
        Ok(text) => {
            if g.json {
                let code = kbz_errors::parse_code(code).map(|c| c.to_string());
                crate::outln!("{}", serde_json::json!({"code": code, "explanation": text}));
            } else {
                crate::outln!("{text}");
            }
            exit::OK
        }
        Err(e) => {
            ui::diagnostics(&[e.to_diagnostic()], g.json);
            exit::INPUT
        }
    }
}

/// `kbz-install validate`.
pub fn validate(g: &Common) -> u8 {
    match inputs::load(g) {
        Ok(i) => {
            let what = if i.bundled {
                "bundled example inventory"
            } else {
                "inventory"
            };
            if g.json {
                crate::outln!(
                    "{}",
                    serde_json::json!({"valid": true, "hosts": i.inventory.hosts.len()})
                );
            } else {
                crate::outln!(
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

/// Install (or uninstall with [`Mode::Uninstall`]); a dry-run prints the plan.
pub fn install(g: &Common, o: &Options, mode: Mode) -> u8 {
    let bundled = g.inventory.is_none();
    let dry_run = o.dry_run || o.offline || bundled;
    if bundled && !g.json {
        crate::errln!("kbz-install: no --inventory given: planning the bundled example inventory (examples/servers.tsv) in dry-run mode, offline; nothing is contacted or changed.");
    }
    let components = components();
    let Session {
        inputs: i,
        ctx,
        notifiers,
    } = match prepare(g, BIN, &components, secrets_mode(dry_run)) {
        Ok(x) => x,
        Err(f) => return f.report(g.json),
    };
    let opts = RunOptions {
        dry_run,
        forks: o.forks.unwrap_or(i.config.cluster.forks).max(1),
        start_from_module: o.start_from_module,
        only: o.only.clone(),
        skip_cleanup: o.skip_cleanup,
        mode,
        state_dir: i.state_dir.clone(),
        ..RunOptions::default()
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => return f.report(g.json),
    };
    let bars = Arc::new(ui::Bars::new(g.json));
    let connector = match connect::connector(&i, g, o.offline) {
        Ok(c) => c,
        Err(f) => return f.report(g.json),
    };
    let postflight = connector.clone();
    let cache = i.state_dir.as_deref().and_then(crate::cache::open);
    let engine = with_cache(
        Engine::new(ctx, components, connector).with_progress(bars.clone()),
        cache.as_ref(),
    );

    if !dry_run && !o.yes && !std::io::stdin().is_terminal() {
        let d = Diagnostic::new(
            Code::E010,
            "refusing to change hosts without confirmation: stdin is not a terminal",
        )
        .hint("pass --yes to apply, or --dry-run to see the plan");
        ui::diagnostics(&[d], g.json);
        return exit::INPUT;
    }

    // The preflight: every host checked before anything changes (installs only).
    let preflight_started = Instant::now();
    let gate = if mode != Mode::Install {
        None
    } else if o.offline || bundled {
        Some(Gate::Offline)
    } else {
        match rt.block_on(pre::gate(&engine, &opts, o.skip_preflight)) {
            Ok(gate) => Some(gate),
            Err(e) => return fail(&e, g),
        }
    };
    let preflight_took = preflight_started.elapsed();
    if let (Some(Gate::Checked { report }), false) = (&gate, g.json) {
        crate::out!("{}", pre::render(report));
    }
    let preflight_failed = gate.as_ref().is_some_and(Gate::stops);
    if preflight_failed {
        let errors = match &gate {
            Some(Gate::Checked { report }) => report.errors(),
            _ => 0,
        };
        tracing::error!(errors, "preflight failed");
        crate::errln!(
            "kbz-install: the preflight found {errors} error(s) (table above): nothing was changed. \
             Fix them and run again, or pass --skip-preflight to install anyway."
        );
        if !dry_run {
            if g.json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "preflight": gate,
                        "changed": 0,
                    }))
                    .unwrap_or_default()
                );
            }
            return exit::FAILED;
        }
    }

    if !dry_run && !o.yes {
        let plan = match rt.block_on(engine.run(&RunOptions {
            dry_run: true,
            ..opts.clone()
        })) {
            Ok(r) => r.plan,
            Err(e) => return fail(&e, g),
        };
        bars.clear();
        if plan.operations() == 0 {
            crate::outln!("Nothing to do: every host is already in the desired state.");
            return exit::OK;
        }
        if !ui::confirm(&format!(
            "{} operations will change {} hosts. Apply? (see them with --dry-run)",
            plan.operations(),
            plan.hosts_changed()
        )) {
            crate::errln!("kbz-install: nothing was changed.");
            return exit::OK;
        }
    }

    // Every artifact the run's hosts need is fetched (a few at a time) before any host
    // changes; the engine then finds each one verified in the cache.
    if let (false, Mode::Install, Some(cache)) = (dry_run, mode, &cache) {
        let selected = match engine.select(&opts) {
            Ok(s) => s,
            Err(e) => return fail(&e, g),
        };
        let fetched = crate::cache::pins(engine.context(), &selected).and_then(|pins| {
            if !g.json && !pins.is_empty() {
                crate::errln!(
                    "kbz-install: {} pinned artifact(s) into {} (verified, fetched where missing)",
                    pins.len(),
                    cache.dir().display()
                );
            }
            crate::cache::prefetch(rt.handle(), cache, &pins)
        });
        if let Err(f) = fetched {
            bars.clear();
            return f.report(g.json);
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
        Ok(mut report) => {
            tracing::info!(
                changed = report.changed(),
                ms = started.elapsed().as_millis() as u64,
                "run done"
            );
            if let Some(n) = &notifiers {
                let event = Event::install_succeeded(&cluster, started.elapsed(), report.changed());
                warn_failed(rt.block_on(n.send(&event)));
            }
            let postflight_started = Instant::now();
            let selected = engine.select(&opts).unwrap_or_default();
            let map = if dry_run || mode != Mode::Install {
                Vec::new()
            } else {
                rt.block_on(pre::port_map(engine.context(), &selected, true))
            };
            // Nothing of kbz's may listen where the port map does not say (E059, a warning
            // here: `kbz-health ports` is the gate). Asked after a run that changed
            // something (a converged re-run cannot have moved a listener).
            let strays = if map.is_empty() || report.changed() == 0 {
                Vec::new()
            } else {
                match rt.block_on(pre::stray_binds(engine.context(), &selected, postflight)) {
                    Ok(s) => s,
                    Err(failed) => {
                        for (h, e) in failed {
                            crate::errln!("warning: {h}: cannot read the listeners: {e}");
                        }
                        Vec::new()
                    }
                }
            };
            if !strays.is_empty() {
                ui::diagnostics(&pre::stray_diagnostics(&strays), g.json);
            }
            if matches!(gate, Some(Gate::Checked { .. })) {
                report
                    .timings
                    .insert(0, Timing::new("all", "preflight", preflight_took));
            }
            if !map.is_empty() {
                report.timings.push(Timing::new(
                    "all",
                    "postflight",
                    postflight_started.elapsed(),
                ));
            }
            report.finish();
            summary(&report, started.elapsed(), g.json, gate.as_ref(), &map);
            if preflight_failed {
                exit::FAILED
            } else {
                exit::OK
            }
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

/// The end-of-run summary with the preflight's line and the port map (or one JSON object
/// with `preflight` and `port_map` next to the run report's fields).
fn summary(
    report: &kbz_core::RunReport,
    elapsed: std::time::Duration,
    json: bool,
    gate: Option<&Gate>,
    map: &[kbz_core::preflight::portmap::Endpoint],
) {
    if json {
        let mut v = serde_json::to_value(report).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if let Some(gate) = gate {
                o.insert(
                    "preflight".into(),
                    serde_json::to_value(gate).unwrap_or_default(),
                );
            }
            if !map.is_empty() {
                o.insert(
                    "port_map".into(),
                    serde_json::to_value(map).unwrap_or_default(),
                );
            }
        }
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    // The preflight's line first: a plan's last line stays its count of operations.
    match gate {
        Some(g @ Gate::Offline) => crate::errln!("{}", pre::summary_line(g)),
        Some(g) => crate::outln!("{}", pre::summary_line(g)),
        None => {}
    }
    if !map.is_empty() {
        crate::outln!("port map:");
        crate::out!("{}", pre::render_port_map(map));
    }
    ui::report(report, elapsed, false);
}

/// `kbz-install preflight`: the checks alone, changing nothing. Offline (the bundled example,
/// `--offline`) it lists what would be checked on every host.
pub fn preflight(g: &Common, o: &Options) -> u8 {
    let components = components();
    let Session { inputs: i, ctx, .. } =
        match prepare(g, BIN, &components, session::Secrets::InMemory) {
            Ok(x) => x,
            Err(f) => return f.report(g.json),
        };
    let opts = RunOptions {
        dry_run: true,
        forks: o.forks.unwrap_or(i.config.cluster.forks).max(1),
        start_from_module: o.start_from_module,
        only: o.only.clone(),
        ..RunOptions::default()
    };
    if i.bundled || o.offline {
        let engine = Engine::new(ctx.clone(), components, Arc::new(connect::Offline));
        let selected = match engine.select(&opts) {
            Ok(s) => s,
            Err(e) => return fail(&e, g),
        };
        let rows = kbz_core::preflight::plan(&ctx, &selected);
        if g.json {
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"offline": true, "checks": rows}))
                    .unwrap_or_default()
            );
        } else {
            crate::errln!(
                "kbz-install: offline: no host is asked; these are the checks each host would get."
            );
            crate::out!("{}", pre::render_plan(&rows));
        }
        return exit::OK;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => return f.report(g.json),
    };
    let connector = match connect::connector(&i, g, false) {
        Ok(c) => c,
        Err(f) => return f.report(g.json),
    };
    let engine = Engine::new(ctx, components, connector);
    let report = match rt.block_on(engine.preflight(&opts)) {
        Ok(r) => r,
        Err(e) => return fail(&e, g),
    };
    if g.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "preflight": Gate::Checked { report: report.clone() }
            }))
            .unwrap_or_default()
        );
    } else {
        crate::out!("{}", pre::render(&report));
    }
    if report.ok() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Prints an engine failure (with the host table of a failed run) and maps it to an exit code.
pub fn fail(e: &EngineError, g: &Common) -> u8 {
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

/// `kbz-install rollback`: replays the last failed run's journal.
pub fn rollback(g: &Common) -> u8 {
    if g.inventory.is_none() {
        let d = Diagnostic::new(
            Code::E010,
            "rollback needs the --inventory of the failed run",
        )
        .hint("kbz-install rollback --inventory servers.tsv");
        ui::diagnostics(&[d], g.json);
        return exit::INPUT;
    }
    let components = components();
    let Session { inputs: i, ctx, .. } =
        match prepare(g, BIN, &components, session::Secrets::InMemory) {
            Ok(x) => x,
            Err(f) => return f.report(g.json),
        };
    let opts = RunOptions {
        state_dir: i.state_dir.clone(),
        ..RunOptions::default()
    };
    let connector = match connect::connector(&i, g, false) {
        Ok(c) => c,
        Err(f) => return f.report(g.json),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => return f.report(g.json),
    };
    let cache = i.state_dir.as_deref().and_then(crate::cache::open);
    let engine = with_cache(Engine::new(ctx, components, connector), cache.as_ref());
    match rt.block_on(engine.rollback_last(&opts)) {
        Ok(summary) => {
            let steps = summary.steps;
            if g.json {
                crate::outln!(
                    "{}",
                    serde_json::json!({
                        "rolled_back": true,
                        "steps": steps,
                        "cluster_not_undone": summary.cluster_not_undone,
                        "stale_locks_taken_over": summary.stale_locks_taken_over,
                    })
                );
                return exit::OK;
            }
            for l in &summary.stale_locks_taken_over {
                crate::errln!("Took over the stale host lock of a killed run: {l}");
            }
            if summary.cluster_not_undone.is_empty() {
                crate::outln!("Rolled back: {steps} undo step(s) applied; every host is back to its state before the failed run.");
            } else {
                crate::outln!("Rolled back: {steps} undo step(s) applied to the hosts' files, packages and services.");
                crate::outln!(
                    "Not undone (cluster state kbz changed; check it before re-running):"
                );
                for c in &summary.cluster_not_undone {
                    crate::outln!("  {c}");
                }
            }
            exit::OK
        }
        Err(e) => fail(&e, g),
    }
}

/// `kbz-install notify test`: one test message to every configured target.
pub fn notify_test(g: &Common) -> u8 {
    let Session { notifiers, .. } = match prepare(g, BIN, &components(), session::Secrets::InMemory)
    {
        Ok(x) => x,
        Err(f) => return f.report(g.json),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => return f.report(g.json),
    };
    let report = rt.block_on(notifiers.test_all());
    let code = if report.all_delivered() {
        exit::OK
    } else {
        exit::FAILED
    };
    if g.json {
        use kbz_notify::TestOutcome;
        let targets: Vec<_> = report
            .results
            .iter()
            .map(|r| {
                let (outcome, reason) = match &r.outcome {
                    TestOutcome::Delivered => ("delivered", None),
                    TestOutcome::Failed(why) => ("failed", Some(why.as_str())),
                    TestOutcome::Disabled => ("disabled", None),
                };
                serde_json::json!({
                    "target": r.target,
                    "kind": r.kind.to_string(),
                    "outcome": outcome,
                    "reason": reason,
                })
            })
            .collect();
        crate::outln!(
            "{}",
            serde_json::json!({"targets": targets, "all_delivered": report.all_delivered()})
        );
        return code;
    }
    if report.results.is_empty() {
        crate::outln!("No [[notify]] targets in the config: nothing to test.");
        return exit::OK;
    }
    for line in report.lines() {
        crate::outln!("{line}");
    }
    code
}

/// Pinned artifacts are fetched into the state directory's download cache
/// ([`crate::cache::open`]: one verified copy per sha256).
fn with_cache(engine: Engine, cache: Option<&kbz_exec::DownloadCache>) -> Engine {
    match cache {
        Some(c) => engine.with_artifacts(Arc::new(c.clone())),
        // Without a cache a run that needs an artifact fails with its own E028.
        None => engine,
    }
}
