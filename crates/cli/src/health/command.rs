//! kbz-health's subcommands, each returning an exit code from [`crate::exit`]: one run
//! (table or JSON, the Prometheus textfile, transition alerts), `serve` (the `/metrics`
//! server), `ports` (the port map and stray binds) and `timer install|remove`.

use clap::Args;
use kbz_core::{Component, Context};
use kbz_errors::{Code, Diagnostic};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{check, output, prom, select, state, timer, HealthReport};
use crate::session::{self, prepare, warn_failed, Session};
use crate::{connect, exit, runtime, Common, Failure};

const BIN: &str = "kbz-health";

/// kbz-health's own options.
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
    /// Check one component only (base, keepalived, haproxy, etcd, postgres, redis).
    #[arg(long, value_name = "COMPONENT", global = true)]
    pub component: Option<String>,
    /// Also write the metrics to FILE (node_exporter textfile format), atomically.
    #[arg(long, value_name = "FILE", global = true)]
    pub prometheus: Option<PathBuf>,
    /// Do not notify on a status change (the state is still recorded).
    #[arg(long, global = true)]
    pub no_notify: bool,
}

/// What a run needs once inputs are loaded.
struct Prepared {
    session: Session,
    components: Vec<Arc<dyn Component>>,
    connector: Arc<dyn kbz_core::executor::Connector>,
    rt: tokio::runtime::Runtime,
}

fn prepare_run(c: &Common, o: &Options) -> Result<Prepared, Failure> {
    if c.inventory.is_none() {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "kbz-health needs the --inventory of the cluster to check",
        )
        .hint("kbz-health --inventory servers.tsv")]));
    }
    let all = kbz_stack::components();
    let components = select(all.clone(), o.component.as_deref())?;
    let session = prepare(c, BIN, &all, session::Secrets::InMemory)?;
    let connector = connect::connector(&session.inputs, c, false)?;
    Ok(Prepared {
        session,
        components,
        connector,
        rt: runtime()?,
    })
}

/// Runs the checks once.
fn run_checks(ctx: &Context, p: &Prepared) -> HealthReport {
    p.rt.block_on(check(ctx, &p.components, p.connector.as_ref()))
}

/// `kbz-health`: one run.
pub fn once(c: &Common, o: &Options) -> u8 {
    let p = match prepare_run(c, o) {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let hosts = p.session.ctx.inventory.hosts.len();
    let bar = crate::ui::progress(0, &format!("checking {hosts} hosts"), c.json);
    let report = run_checks(&p.session.ctx, &p);
    bar.finish_and_clear();
    tracing::info!(status = %report.status, checks = report.checks.len(), round_trips = report.round_trips.total, ms = report.duration_ms, "health run");
    if c.json {
        crate::outln!("{}", output::json(&report));
    } else {
        crate::out!("{}", output::table(&report));
    }
    if let Some(file) = &o.prometheus {
        if let Err(e) = prom::write_atomic(file, &prom::render(&report, prom::now_unix())) {
            let d = Diagnostic::new(Code::E022, format!("cannot write {}: {e}", file.display()))
                .hint("point --prometheus at node_exporter's --collector.textfile.directory, writable by this user");
            crate::ui::diagnostics(&[d], c.json);
            return exit::FAILED;
        }
    }
    if o.component.is_none() {
        alert(&p, &report, o.no_notify);
    }
    report.exit_code()
}

/// Records the status and notifies on a change (whole-cluster runs only).
fn alert(p: &Prepared, report: &HealthReport, quiet: bool) {
    let Some(dir) = &p.session.inputs.state_dir else {
        return;
    };
    let before = state::last(dir);
    if let Some(event) = state::transition(before, report) {
        if !quiet && p.session.notifiers.has_enabled() {
            warn_failed(p.rt.block_on(p.session.notifiers.send(&event)));
        }
    }
    if let Err(e) = state::record(dir, report) {
        crate::errln!(
            "warning: cannot record the health state in {}: {e}",
            dir.display()
        );
    }
}

/// `kbz-health serve --listen ADDR`: each `GET /metrics` runs the checks afresh.
pub fn serve(c: &Common, o: &Options, listen: &str) -> u8 {
    let p = match prepare_run(c, o) {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let p = Arc::new(p);
    let pp = p.clone();
    let server = match super::serve::MetricsServer::start(listen, move || {
        let report = run_checks(&pp.session.ctx, &pp);
        prom::render(&report, prom::now_unix())
    }) {
        Ok(s) => s,
        Err(f) => return f.report(c.json),
    };
    crate::errln!("kbz-health: serving http://{}/metrics", server.addr());
    server.wait();
    exit::OK
}

/// `kbz-health ports`: the port map, each endpoint checked by connecting, and the stray
/// binds of kbz's services (E059), one round trip per host.
pub fn ports(c: &Common, o: &Options) -> u8 {
    let p = match prepare_run(c, o) {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let ctx = &p.session.ctx;
    let bar = crate::ui::progress(0, "checking every endpoint and listener", c.json);
    let map =
        p.rt.block_on(crate::preflight::port_map(ctx, &p.components, true));
    let strays = p.rt.block_on(crate::preflight::stray_binds(
        ctx,
        &p.components,
        p.connector.clone(),
    ));
    bar.finish_and_clear();
    let strays = match strays {
        Ok(s) => s,
        Err(failed) => {
            let ds: Vec<Diagnostic> = failed
                .into_iter()
                .map(|(h, e)| {
                    Diagnostic::new(Code::E011, format!("cannot read the listeners: {e}"))
                        .on_host(h)
                        .hint("check SSH to the host: `kbz-install preflight --inventory servers.tsv`")
                })
                .collect();
            crate::ui::diagnostics(&ds, c.json);
            return exit::UNREACHABLE;
        }
    };
    let silent = map.iter().filter(|e| e.reachable == Some(false)).count();
    tracing::info!(
        endpoints = map.len(),
        silent,
        stray = strays.len(),
        "ports run"
    );
    if c.json {
        crate::outln!(
            "{}",
            serde_json::json!({ "port_map": map, "stray_binds": strays })
        );
    } else {
        crate::out!("{}", crate::preflight::render_port_map(&map));
        crate::ui::diagnostics(&crate::preflight::stray_diagnostics(&strays), false);
        crate::outln!(
            "{} endpoints, {} answering; {} stray binds",
            map.len(),
            map.len() - silent,
            strays.len()
        );
    }
    if silent > 0 {
        exit::DOWN
    } else if !strays.is_empty() {
        exit::DEGRADED
    } else {
        exit::OK
    }
}

/// `kbz-health timer install`: the argv of the timer's run is this program with the same
/// inputs (absolute paths), `--prometheus` when given.
pub fn timer_install(c: &Common, o: &Options, root: &Path, every: &str) -> u8 {
    let Some(inv) = &c.inventory else {
        return Failure::input(vec![Diagnostic::new(
            Code::E010,
            "the timer needs the --inventory it will check",
        )
        .hint("kbz-health timer install --inventory /srv/kbz/servers.tsv")])
        .report(c.json);
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let program = std::env::current_exe()
        .map(|p| abs(&p))
        .unwrap_or_else(|_| PathBuf::from(BIN));
    let mut argv = vec![
        program.display().to_string(),
        "--inventory".into(),
        abs(inv).display().to_string(),
    ];
    for (flag, v) in [
        ("--config", &c.config),
        ("--state-dir", &c.state_dir),
        ("--prometheus", &o.prometheus),
    ] {
        if let Some(v) = v {
            argv.push(flag.into());
            argv.push(abs(v).display().to_string());
        }
    }
    if c.accept_new_host_keys {
        argv.push("--accept-new-host-keys".into());
    }
    let _lock = match crate::lock::controller(state_dir(c).as_deref(), "kbz-health timer install") {
        Ok(l) => l,
        Err(f) => return f.report(c.json),
    };
    match timer::install(root, &argv, every) {
        Ok(paths) => {
            if c.json {
                crate::outln!("{}", serde_json::json!({ "written": paths }));
                return exit::OK;
            }
            for p in paths {
                crate::outln!("wrote {}", p.display());
            }
            exit::OK
        }
        Err(f) => f.report(c.json),
    }
}

/// `kbz-health timer remove`.
pub fn timer_remove(c: &Common, root: &Path) -> u8 {
    let _lock = match crate::lock::controller(state_dir(c).as_deref(), "kbz-health timer remove") {
        Ok(l) => l,
        Err(f) => return f.report(c.json),
    };
    match timer::remove(root) {
        Ok(paths) => {
            if c.json {
                crate::outln!("{}", serde_json::json!({ "removed": paths }));
                return exit::OK;
            }
            if paths.is_empty() {
                crate::outln!("no kbz-health timer under {}", root.display());
            }
            for p in paths {
                crate::outln!("removed {}", p.display());
            }
            exit::OK
        }
        Err(f) => f.report(c.json),
    }
}

/// The state directory the timer commands lock: `--state-dir`, else `.kbz` next to the
/// inventory (as every run resolves it); none without either.
fn state_dir(c: &Common) -> Option<PathBuf> {
    c.state_dir.clone().or_else(|| {
        c.inventory.as_ref().map(|i| {
            i.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(".kbz")
        })
    })
}
