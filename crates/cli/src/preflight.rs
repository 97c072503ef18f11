//! The preflight before an install (and `kbz-install preflight`): one table of every problem
//! of every host, the gate that stops a run on an error before anything changes, and the
//! postflight port map, each endpoint checked by connecting to it from the controller.

use kbz_core::executor::Connector;
use kbz_core::preflight::portmap::{self, Endpoint, StrayBind};
use kbz_core::preflight::{Planned, Report};
use kbz_core::{Component, Context, Engine, EngineError, RunOptions};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::ui;

/// What the preflight of a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Gate {
    /// It ran; `report` holds every problem found.
    Checked {
        /// The report.
        #[serde(flatten)]
        report: Report,
    },
    /// `--skip-preflight`: nothing was checked.
    Skipped,
    /// An offline plan: no host was asked.
    Offline,
}

impl Gate {
    /// Whether the run must stop (the preflight found an error).
    pub fn stops(&self) -> bool {
        matches!(self, Gate::Checked { report } if !report.ok())
    }
}

/// Runs the preflight of `opts`' components unless `skip`.
pub async fn gate(engine: &Engine, opts: &RunOptions, skip: bool) -> Result<Gate, EngineError> {
    if skip {
        return Ok(Gate::Skipped);
    }
    Ok(Gate::Checked {
        report: engine.preflight(opts).await?,
    })
}

/// The findings table: host, check, level, E-code, detail, fix.
pub fn render(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.host.clone(),
                f.check.clone(),
                f.severity.as_str().into(),
                f.code.to_string(),
                f.detail.clone(),
                f.fix.clone(),
            ]
        })
        .collect();
    let passed: usize = report.passed.values().sum();
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&ui::render_table(
            &["host", "check", "level", "code", "detail", "fix"],
            &rows,
        ));
    }
    out.push_str(&format!(
        "preflight: {} host(s) checked, {passed} check(s) passed, {} error(s), {} warning(s)\n",
        report.round_trips.len(),
        report.errors(),
        report.warnings()
    ));
    out
}

/// The line the run summary carries about the preflight.
pub fn summary_line(g: &Gate) -> String {
    match g {
        Gate::Checked { report } => format!(
            "preflight: {} error(s), {} warning(s) on {} host(s)",
            report.errors(),
            report.warnings(),
            report.round_trips.len()
        ),
        Gate::Skipped => {
            "preflight: SKIPPED (--skip-preflight): no host was checked before the run".into()
        }
        Gate::Offline => {
            "preflight: not run (offline plan); `kbz-install preflight` lists what it checks".into()
        }
    }
}

/// What would be checked on every host, as a table (offline, the bundled example).
pub fn render_plan(rows: &[Planned]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.host.clone(), r.check.clone(), r.expect.clone()])
        .collect();
    ui::render_table(&["host", "check", "passes when"], &rows)
}

/// The port map of the selected components, each endpoint checked by a TCP connection from
/// the controller (`check`), concurrently.
pub async fn port_map(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    check: bool,
) -> Vec<Endpoint> {
    let mut map = portmap::port_map(ctx, components);
    if !check {
        return map;
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in map.iter().enumerate() {
        let addr = e.address.clone();
        set.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::net::TcpStream::connect(addr.as_str())
                )
                .await,
                Ok(Ok(_))
            );
            (i, ok)
        });
    }
    while let Some(j) = set.join_next().await {
        if let Ok((i, ok)) = j {
            map[i].reachable = Some(ok);
        }
    }
    map
}

/// The port map as a table.
pub fn render_port_map(map: &[Endpoint]) -> String {
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|e| {
            vec![
                e.service.clone(),
                e.address.clone(),
                e.via.clone(),
                e.auth.clone(),
                match e.reachable {
                    Some(true) => "answers".into(),
                    Some(false) => "NO ANSWER".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    ui::render_table(&["service", "address", "via", "auth", "check"], &rows)
}

/// Every stray bind of kbz's services ([`portmap::stray_binds`]): each host's listeners in one
/// round trip, concurrently. A host that cannot be asked is an error naming it.
pub async fn stray_binds(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    connector: Arc<dyn Connector>,
) -> Result<Vec<StrayBind>, Vec<(String, String)>> {
    let hosts: Vec<kbz_core::Host> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| components.iter().any(|c| c.applies_to(h)))
        .cloned()
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().cloned().enumerate() {
        let connector = connector.clone();
        set.spawn(async move {
            let asked = async {
                let exec = connector.connect(&h).await.map_err(|e| e.to_string())?;
                let cmd =
                    kbz_core::Cmd::new(portmap::LISTENERS_SCRIPT).timeout(Duration::from_secs(20));
                let out = exec.run(&cmd).await.map_err(|e| e.to_string())?;
                portmap::parse_listeners(&out.stdout_str())
            };
            (i, asked.await)
        });
    }
    let mut answers: Vec<Option<Result<_, String>>> = vec![None; hosts.len()];
    while let Some(j) = set.join_next().await {
        if let Ok((i, a)) = j {
            answers[i] = Some(a);
        }
    }
    let (mut strays, mut failed) = (Vec::new(), Vec::new());
    for (h, a) in hosts.iter().zip(answers) {
        match a.unwrap_or_else(|| Err("the check did not finish".into())) {
            Ok(l) => strays.extend(portmap::stray_binds(ctx, components, h, &l)),
            Err(e) => failed.push((h.hostname.clone(), e)),
        }
    }
    if failed.is_empty() {
        Ok(strays)
    } else {
        Err(failed)
    }
}

/// Stray binds as E059 diagnostics, one per listener.
pub fn stray_diagnostics(strays: &[StrayBind]) -> Vec<kbz_errors::Diagnostic> {
    strays
        .iter()
        .map(|s| {
            kbz_errors::Diagnostic::new(
                kbz_errors::Code::E059,
                if s.expected == "-" {
                    format!(
                        "{} listens on {}, a port kbz does not open for it",
                        s.process, s.address
                    )
                } else {
                    format!(
                        "{} listens on {}, where kbz binds it on {} only",
                        s.process, s.address, s.expected
                    )
                },
            )
            .on_host(&s.host)
            .hint(format!(
                "see who opened it and how: `ss -ltnp | grep {}` on {}; bind it to the member address only (a local edit of its config, or another install of the same software)",
                s.process, s.host
            ))
        })
        .collect()
}
