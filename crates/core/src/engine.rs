//! The engine: for each selected component in module order, plan every applicable host
//! (probe in one round trip, diff), apply with a write-ahead undo journal, run cluster steps,
//! and on any failure roll every host back in reverse. Dry-run is the same path with
//! mutation switched off.

use kbz_errors::{Code, Diagnostic, HasCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::artifact::ArtifactPin;
use crate::batch::{packages_first, ProbeCache, PACKAGES};
use crate::cache::{Cache, CacheError};
use crate::component::{ClusterChange, Component, ComponentError, HostExec};
use crate::context::Context;
use crate::executor::{Connector, ExecError, Executor};
use crate::hostlock::HostLocks;
use crate::inventory::Host;
use crate::journal::{Journal, JournalEntry, JournalError, RunStatus};
use crate::plan::{diff_after, HostPlan, Plan, Redactor};
use crate::resource::{Observed, Op, Resource};
use crate::runlock::RunLock;

/// How a run names itself in the controller's and the hosts' locks.
fn command(mode: Mode) -> String {
    match mode {
        Mode::Install => "kbz-install install".into(),
        Mode::Uninstall => "kbz-install uninstall".into(),
    }
}

/// Install or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Converge to the components' desired state.
    Install,
    /// Converge to the components' uninstall state (modules in reverse order).
    Uninstall,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Plan only; probes stay read-only and unreachable hosts are planned as fresh.
    pub dry_run: bool,
    /// Hosts worked on concurrently.
    pub forks: usize,
    /// Skip modules below this number.
    pub start_from_module: u8,
    /// Run only this component.
    pub only: Option<String>,
    /// On failure keep what was applied (for debugging) instead of rolling back;
    /// `kbz-install rollback` undoes it later.
    pub skip_cleanup: bool,
    /// Install or uninstall.
    pub mode: Mode,
    /// Where the journal is persisted; `None` keeps it in memory.
    pub state_dir: Option<PathBuf>,
    /// The per-host lock file a real run takes on every host it reaches
    /// ([`crate::shell::HOST_LOCK_PATH`] by default).
    pub host_lock: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dry_run: false,
            forks: 10,
            start_from_module: 1,
            only: None,
            skip_cleanup: false,
            mode: Mode::Install,
            state_dir: None,
            host_lock: crate::shell::HOST_LOCK_PATH.into(),
        }
    }
}

/// What happened on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// Operations applied (or planned in dry-run).
    pub changed: usize,
    /// Resources already in the desired state.
    pub ok: usize,
    /// Actions cluster steps took on this host (REPLICAOF, SENTINEL MONITOR, ...).
    pub cluster_changed: usize,
    /// The failure, if any.
    pub failed: Option<String>,
    /// Unreachable (dry-run only; planned as fresh).
    pub unreachable: bool,
}

/// Duration of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// Component, `packages` (the packages-first phase), or `all` / `connect` for the
    /// run-wide phases.
    pub component: String,
    /// `connect`, `probe` (the batched probe), `apply` (`plan` in a dry-run), `cluster`,
    /// `rollback`; the CLI adds `preflight` and `postflight`.
    pub phase: String,
    /// Milliseconds.
    pub ms: u128,
}

impl Timing {
    /// A timing of `component`'s `phase`.
    pub fn new(component: &str, phase: &str, d: Duration) -> Self {
        Timing {
            component: component.into(),
            phase: phase.into(),
            ms: d.as_millis(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Dry-run or real.
    pub dry_run: bool,
    /// Every planned (dry-run) or applied change.
    pub plan: Plan,
    /// Per host.
    pub hosts: BTreeMap<String, HostReport>,
    /// Per phase.
    pub timings: Vec<Timing>,
    /// SSH round trips (for executors that count them).
    pub round_trips: u64,
    /// Every action the components' cluster steps took, in order.
    pub cluster_changes: Vec<ClusterChange>,
    /// Totals over every host (filled when the run ends).
    pub summary: Summary,
}

/// Milliseconds spent in one kind of phase over the whole run, as the summary reports it:
/// `preflight`, `connect`, `probe`, `packages`, `apply`, `plan`, `cluster`, `rollback`,
/// `postflight`, in the order they first happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseTotal {
    /// Phase.
    pub phase: String,
    /// Milliseconds.
    pub ms: u128,
}

/// Totals of a run, as the text summary and `--json` report them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Resource operations applied (or planned in dry-run).
    pub changed: usize,
    /// Resources already in the desired state.
    pub ok: usize,
    /// Actions taken by cluster steps.
    pub cluster_changes: usize,
    /// Hosts with a failure.
    pub failed_hosts: usize,
    /// Time per kind of phase (the packages-first phase is `packages`).
    pub phases: Vec<PhaseTotal>,
}

impl RunReport {
    /// Total changed operations.
    pub fn changed(&self) -> usize {
        self.hosts.values().map(|h| h.changed).sum()
    }

    /// Total actions taken by cluster steps.
    pub fn cluster_changed(&self) -> usize {
        self.cluster_changes.len()
    }

    /// Computes [`RunReport::summary`] from the per-host figures.
    pub fn finish(&mut self) {
        self.summary = Summary {
            changed: self.changed(),
            ok: self.hosts.values().map(|h| h.ok).sum(),
            cluster_changes: self.cluster_changed(),
            failed_hosts: self.hosts.values().filter(|h| h.failed.is_some()).count(),
            phases: phase_totals(&self.timings),
        };
    }
}

/// Sums timings by kind of phase, in the order each first happened.
pub fn phase_totals(timings: &[Timing]) -> Vec<PhaseTotal> {
    let mut out: Vec<PhaseTotal> = Vec::new();
    for t in timings {
        let phase = if t.component == crate::batch::PACKAGES {
            crate::batch::PACKAGES
        } else {
            t.phase.as_str()
        };
        match out.iter_mut().find(|p| p.phase == phase) {
            Some(p) => p.ms += t.ms,
            None => out.push(PhaseTotal {
                phase: phase.into(),
                ms: t.ms,
            }),
        }
    }
    out
}

/// Engine failures. Every variant maps to an E-code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request cannot be served (unknown component, bad module).
    #[error("{0}")]
    Usage(String),
    /// Hosts could not be reached; nothing was changed.
    #[error("{} host(s) unreachable, nothing was changed: {}", .0.len(), .0.iter().map(|(h, e)| format!("{h}: {e}")).collect::<Vec<_>>().join("; "))]
    Connect(Vec<(String, ExecError)>),
    /// A component failed; the report says what was applied and whether it was rolled back.
    #[error("{component} failed{}: {source}; {}", .host.as_ref().map(|h| format!(" on {h}")).unwrap_or_default(), rollback_text(.rollback))]
    Failed {
        /// Component.
        component: String,
        /// Host, for host-level failures.
        host: Option<String>,
        /// Cause.
        source: Box<ComponentError>,
        /// What happened to the applied changes.
        rollback: RollbackOutcome,
        /// The run so far.
        report: Box<RunReport>,
    },
    /// The journal could not be written or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Another run holds the state directory's run lock, or a stale lock is left (E066).
    #[error(transparent)]
    Lock(#[from] crate::runlock::LockError),
    /// Hosts are locked by another run, or hold a stale lock (E067); nothing was changed.
    #[error(transparent)]
    HostLock(#[from] crate::hostlock::HostLocksRefused),
    /// Undo steps failed during `kbz-install rollback`.
    #[error("rollback incomplete: {}", .0.join("; "))]
    RollbackIncomplete(Vec<String>),
}

/// What `kbz-install rollback` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollbackSummary {
    /// Undo steps applied.
    pub steps: usize,
    /// Cluster changes of the run that a rollback cannot undo.
    pub cluster_not_undone: Vec<String>,
    /// Stale host locks (of the killed run) this rollback replaced.
    pub stale_locks_taken_over: Vec<String>,
}

/// What happened to a failed run's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// Every host is back to its state before the run.
    RolledBack,
    /// Kept on purpose (`--skip-cleanup`); `kbz-install rollback` undoes it.
    Kept,
    /// Every host's recorded changes were undone, but cluster steps had acted on the running
    /// cluster (listed) and kbz does not undo those.
    ClusterNotUndone(Vec<String>),
    /// Some undo steps failed (listed).
    Incomplete(Vec<String>),
    /// Dry-run: nothing was applied.
    NothingApplied,
}

fn rollback_text(r: &RollbackOutcome) -> String {
    match r {
        RollbackOutcome::RolledBack => {
            "every host was rolled back to its state before the run".into()
        }
        RollbackOutcome::Kept => {
            "changes were kept (--skip-cleanup); undo them with `kbz-install rollback`".into()
        }
        RollbackOutcome::ClusterNotUndone(c) => format!(
            "the hosts' files, packages and services were rolled back, but these cluster changes \
             were not undone (check the cluster before re-running): {}",
            c.join("; ")
        ),
        RollbackOutcome::Incomplete(f) => format!("rollback incomplete: {}", f.join("; ")),
        RollbackOutcome::NothingApplied => "nothing was applied".into(),
    }
}

impl HasCode for EngineError {
    fn code(&self) -> Code {
        match self {
            EngineError::Usage(_) => Code::E010,
            EngineError::Connect(v) => v.first().map(|(_, e)| e.code()).unwrap_or(Code::E011),
            EngineError::Failed {
                rollback: RollbackOutcome::Incomplete(_),
                ..
            } => Code::E029,
            EngineError::Failed { source, .. } => source.code(),
            EngineError::Journal(e) => e.code(),
            EngineError::Lock(e) => e.code(),
            EngineError::HostLock(e) => e.code(),
            EngineError::RollbackIncomplete(_) => Code::E029,
        }
    }
}

impl EngineError {
    /// The user-facing diagnostic, with the host attached where known (the failed step's, or
    /// the one a cluster failure names) and a cluster failure's specific fix.
    pub fn diagnostic(&self) -> Diagnostic {
        if let EngineError::HostLock(e) = self {
            return e.diagnostic();
        }
        let mut d = Diagnostic::new(self.code(), self.to_string());
        if let EngineError::Failed { host, source, .. } = self {
            if let Some(h) = host.as_deref().or(source.host()) {
                d = d.on_host(h);
            }
            if let Some(hint) = source.hint() {
                d = d.hint(hint);
            }
        }
        d
    }
}

/// Progress events for bars and logs. The engine never prints.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A component starts.
    ComponentStart {
        /// Component.
        component: String,
        /// Module.
        module: u8,
        /// Hosts involved.
        hosts: usize,
    },
    /// One host finished a component.
    HostDone {
        /// Component.
        component: String,
        /// Host.
        host: String,
        /// Operations applied or planned.
        changed: usize,
    },
    /// A host failed.
    HostFailed {
        /// Component.
        component: String,
        /// Host.
        host: String,
        /// Error text.
        error: String,
    },
    /// A host is unreachable in dry-run and is planned as fresh.
    Unreachable {
        /// Host.
        host: String,
        /// Error text.
        error: String,
    },
    /// Rollback of a host starts.
    RollbackStart {
        /// Host.
        host: String,
        /// Undo steps.
        steps: usize,
    },
}

/// Receives progress events.
pub trait Progress: Send + Sync {
    /// Called for each event, from any task.
    fn event(&self, _event: &Event) {}
}

/// Masks secrets in event error texts before passing them on.
struct MaskedProgress {
    inner: Arc<dyn Progress>,
    redactor: Arc<Redactor>,
}

impl Progress for MaskedProgress {
    fn event(&self, event: &Event) {
        match event {
            Event::HostFailed {
                component,
                host,
                error,
            } => self.inner.event(&Event::HostFailed {
                component: component.clone(),
                host: host.clone(),
                error: self.redactor.redact(error),
            }),
            Event::Unreachable { host, error } => self.inner.event(&Event::Unreachable {
                host: host.clone(),
                error: self.redactor.redact(error),
            }),
            e => self.inner.event(e),
        }
    }
}

/// Ignores events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Runs components against hosts: [`Engine::new`] with a context, components and a
/// [`Connector`], then [`Engine::run`]. The crate documentation has a complete example (inputs,
/// engine, dry-run, apply, converged re-run) on fake hosts.
pub struct Engine {
    ctx: Context,
    components: Vec<Arc<dyn Component>>,
    connector: Arc<dyn Connector>,
    progress: Arc<dyn Progress>,
    redactor: Arc<Redactor>,
    artifacts: Arc<Artifacts>,
}

/// The controller's side of pinned artifacts: the download cache, and the local path of
/// every pin fetched during this engine's life (each pin is fetched and verified once, even
/// when many hosts need it at the same time).
#[derive(Default)]
struct Artifacts {
    cache: Option<Arc<dyn Cache>>,
    fetched: tokio::sync::Mutex<BTreeMap<String, PathBuf>>,
}

impl Artifacts {
    async fn local(&self, pin: &ArtifactPin) -> Result<PathBuf, ComponentError> {
        let cache = self.cache.as_ref().ok_or_else(|| {
            ComponentError::Artifact(CacheError::Io {
                path: "(none)".into(),
                reason: format!(
                    "{} is needed but the engine has no download cache (Engine::with_artifacts)",
                    pin.describe()
                ),
            })
        })?;
        let mut fetched = self.fetched.lock().await;
        let key = format!("{}@{}", pin.name, pin.sha256);
        if let Some(p) = fetched.get(&key) {
            return Ok(p.clone());
        }
        let p = cache.fetch(pin).await.map_err(ComponentError::Artifact)?;
        fetched.insert(key, p.clone());
        Ok(p)
    }

    /// Applies one operation; artifacts are fetched on the controller and pushed.
    async fn apply(&self, exec: &dyn Executor, op: &Op) -> Result<(), ComponentError> {
        match op {
            Op::PutArtifact {
                path,
                pin,
                mode,
                owner,
            } => {
                let local = self.local(pin).await?;
                exec.put_local_file(path, &local, &pin.sha256, *mode, owner)
                    .await
                    .map_err(|e| op_error(op, e))
            }
            _ => exec.apply(op).await.map_err(|e| op_error(op, e)),
        }
    }
}

fn op_error(op: &Op, e: ExecError) -> ComponentError {
    ComponentError::Operation {
        what: op.describe(),
        code: op_code(op, &e),
        source: e,
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("components", &self.components)
            .finish()
    }
}

type Execs = BTreeMap<String, Arc<dyn Executor>>;

/// Files the packages-first phase changed, per (host, component).
type Changed = BTreeMap<(String, String), std::collections::BTreeSet<String>>;

/// What the run shares between its stages: the batched probe's answers and the files the
/// packages-first phase changed.
#[derive(Default)]
struct Shared {
    cache: ProbeCache,
    changed: Changed,
    absent_services: BTreeMap<(String, String), Vec<(String, Observed)>>,
}

impl Engine {
    /// An engine over these components (any order; they run by module number).
    pub fn new(
        ctx: Context,
        mut components: Vec<Arc<dyn Component>>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        components.sort_by_key(|c| c.module());
        let redactor = Arc::new(Redactor::from_secrets(&ctx.secrets));
        Engine {
            ctx,
            components,
            connector,
            progress: Arc::new(NoProgress),
            redactor,
            artifacts: Arc::default(),
        }
    }

    /// Sets the download cache that pinned artifacts ([`Resource::Artifact`]) are fetched
    /// into before they are pushed. Without one, a run that must push an artifact fails
    /// (E028); dry-runs never fetch.
    pub fn with_artifacts(mut self, cache: Arc<dyn Cache>) -> Self {
        self.artifacts = Arc::new(Artifacts {
            cache: Some(cache),
            fetched: Default::default(),
        });
        self
    }

    /// Sets the progress receiver. Error texts in its events are masked first (a failed
    /// command's stderr can echo a secret).
    pub fn with_progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = Arc::new(MaskedProgress {
            inner: p,
            redactor: self.redactor.clone(),
        });
        self
    }

    /// The preflight of the components `opts` selects ([`crate::preflight`]): connects to
    /// every inventory host (up to `forks` at a time) and runs the one read-only check
    /// script on each. Changes nothing; an unreachable host is an E011 finding.
    pub async fn preflight(
        &self,
        opts: &RunOptions,
    ) -> Result<crate::preflight::Report, EngineError> {
        let components = self.select(opts)?;
        let sem = Arc::new(Semaphore::new(opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (i, h) in self.ctx.inventory.hosts.iter().cloned().enumerate() {
            let c = self.connector.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let r = c.connect(&h).await;
                (i, h, r)
            });
        }
        let mut hosts = Vec::new();
        while let Some(j) = set.join_next().await {
            if let Ok(x) = j {
                hosts.push(x);
            }
        }
        hosts.sort_by_key(|x| x.0);
        let hosts = hosts.into_iter().map(|(_, h, r)| (h, r)).collect();
        Ok(crate::preflight::check(&self.ctx, &components, hosts).await)
    }

    /// The context of the run.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The components a run with these options would touch, in order.
    pub fn select(&self, opts: &RunOptions) -> Result<Vec<Arc<dyn Component>>, EngineError> {
        if let Some(only) = &opts.only {
            if !self.components.iter().any(|c| c.name() == only) {
                let names: Vec<&str> = self.components.iter().map(|c| c.name()).collect();
                return Err(EngineError::Usage(format!(
                    "unknown component `{only}` for --only; known: {}",
                    names.join(", ")
                )));
            }
        }
        let max = self
            .components
            .iter()
            .map(|c| c.module())
            .max()
            .unwrap_or(1);
        if opts.start_from_module < 1 || opts.start_from_module > max {
            return Err(EngineError::Usage(format!(
                "--start-from-module {} is out of range: modules are 1 to {max}",
                opts.start_from_module
            )));
        }
        let mut sel: Vec<Arc<dyn Component>> = self
            .components
            .iter()
            .filter(|c| c.module() >= opts.start_from_module)
            .filter(|c| opts.only.as_deref().is_none_or(|o| o == c.name()))
            .cloned()
            .collect();
        if opts.mode == Mode::Uninstall {
            sel.reverse();
        }
        Ok(sel)
    }

    /// Runs. Real runs stop at the first failure and roll back (unless `skip_cleanup`).
    pub async fn run(&self, opts: &RunOptions) -> Result<RunReport, EngineError> {
        let selected = self.select(opts)?;
        // One mutating run per state directory; held until this function returns.
        let _lock = match (opts.dry_run, opts.state_dir.as_deref()) {
            (false, Some(dir)) => {
                let lock = RunLock::acquire(dir, &command(opts.mode))?;
                Journal::check_no_pending(dir)?;
                Some(lock)
            }
            _ => None,
        };
        let mut report = RunReport {
            dry_run: opts.dry_run,
            ..RunReport::default()
        };
        let t = Instant::now();
        let execs = self.connect_all(opts, &mut report).await?;
        // Every host this run changes is locked for it; dry-runs change nothing and lock nothing.
        let host_locks = if opts.dry_run {
            None
        } else {
            Some(
                HostLocks::acquire(
                    execs.values().cloned(),
                    &opts.host_lock,
                    &command(opts.mode),
                )
                .await?,
            )
        };
        let result = self.run_locked(opts, &selected, &execs, report, t).await;
        if let Some(l) = host_locks {
            l.release().await;
        }
        result.map(|mut r| {
            // The lock's release is a round trip of the run too.
            r.round_trips = execs.values().map(|e| e.round_trips()).sum();
            r
        })
    }

    /// The run once every host is reached and locked.
    async fn run_locked(
        &self,
        opts: &RunOptions,
        selected: &[Arc<dyn Component>],
        execs: &Execs,
        mut report: RunReport,
        t: Instant,
    ) -> Result<RunReport, EngineError> {
        let execs = execs.clone();
        let ctx = self.gather_facts(&execs).await?;
        push_timing(&mut report, "connect", "connect", t.elapsed());

        let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let journal = Arc::new(Mutex::new(Journal::new(
            run_id,
            if opts.dry_run {
                None
            } else {
                opts.state_dir.as_deref()
            },
        )));
        if !opts.dry_run {
            lock(&journal).set_status(RunStatus::Running)?;
        }

        // One probe round trip per host for every component; each reuses its share while
        // nothing changed on the host.
        let t = Instant::now();
        let mut shared = Shared::default();
        self.probe_all(&ctx, selected, &execs, opts, &shared.cache)
            .await;
        push_timing(&mut report, "all", "probe", t.elapsed());
        if !opts.dry_run && opts.mode == Mode::Install {
            let t = Instant::now();
            let r = self
                .packages_phase(
                    &ctx,
                    selected,
                    &execs,
                    opts,
                    &mut shared,
                    &journal,
                    &mut report,
                )
                .await;
            push_timing(&mut report, PACKAGES, "apply", t.elapsed());
            if let Err((host, source)) = r {
                return Err(self
                    .fail_run(opts, &journal, &execs, report, PACKAGES, host, source)
                    .await);
            }
        }

        for comp in selected {
            let hosts: Vec<Host> = ctx
                .inventory
                .hosts
                .iter()
                .filter(|h| comp.applies_to(h))
                .cloned()
                .collect();
            if hosts.is_empty() {
                continue;
            }
            self.progress.event(&Event::ComponentStart {
                component: comp.name().into(),
                module: comp.module(),
                hosts: hosts.len(),
            });
            let t = Instant::now();
            let result = self
                .run_component(
                    &ctx,
                    comp,
                    &hosts,
                    &execs,
                    opts,
                    &journal,
                    &shared,
                    &mut report,
                )
                .await;
            push_timing(
                &mut report,
                comp.name(),
                if opts.dry_run { "plan" } else { "apply" },
                t.elapsed(),
            );
            let failure = match result {
                Ok(()) if !opts.dry_run => {
                    let t = Instant::now();
                    let hx: Vec<HostExec> = hosts
                        .iter()
                        .filter_map(|h| {
                            execs.get(&h.hostname).map(|e| HostExec {
                                host: h.clone(),
                                exec: e.clone(),
                            })
                        })
                        .collect();
                    let r = match opts.mode {
                        // The context with facts, as every other step of the run sees it.
                        Mode::Install => match comp.converge_cluster(&ctx, &hx).await {
                            Ok(changes) => {
                                if !changes.is_empty() {
                                    shared.cache.invalidate_all();
                                }
                                for mut c in changes {
                                    c.component = comp.name().into();
                                    lock(&journal).record_cluster(c.to_string())?;
                                    report
                                        .hosts
                                        .entry(c.host.clone())
                                        .or_default()
                                        .cluster_changed += 1;
                                    report.cluster_changes.push(c);
                                }
                                None
                            }
                            Err(e) => Some((None, e)),
                        },
                        Mode::Uninstall => None,
                    };
                    push_timing(&mut report, comp.name(), "cluster", t.elapsed());
                    r
                }
                Ok(()) => None,
                Err(f) => Some(f),
            };
            if let Some((host, source)) = failure {
                return Err(self
                    .fail_run(opts, &journal, &execs, report, comp.name(), host, source)
                    .await);
            }
        }
        if !opts.dry_run {
            lock(&journal).set_status(RunStatus::Succeeded)?;
        }
        report.round_trips = execs.values().map(|e| e.round_trips()).sum();
        report.finish();
        Ok(report)
    }

    /// Ends a failed run: rolls every host back (or keeps the changes with `skip_cleanup`)
    /// and returns the failure with the report so far.
    #[allow(clippy::too_many_arguments)]
    async fn fail_run(
        &self,
        opts: &RunOptions,
        journal: &Arc<Mutex<Journal>>,
        execs: &Execs,
        mut report: RunReport,
        component: &str,
        host: Option<String>,
        source: ComponentError,
    ) -> EngineError {
        report.round_trips = execs.values().map(|e| e.round_trips()).sum();
        report.finish();
        let status = |s| lock(journal).set_status(s).map_err(EngineError::from);
        let rollback = if opts.dry_run {
            RollbackOutcome::NothingApplied
        } else if opts.skip_cleanup {
            if let Err(e) = status(RunStatus::Failed) {
                return e;
            }
            RollbackOutcome::Kept
        } else {
            let t = Instant::now();
            let j = lock(journal).clone();
            let failures = self.rollback_journal(&j, execs).await;
            push_timing(&mut report, "all", "rollback", t.elapsed());
            let (s, outcome) = if failures.is_empty() && j.cluster.is_empty() {
                (RunStatus::RolledBack, RollbackOutcome::RolledBack)
            } else if failures.is_empty() {
                (
                    RunStatus::RolledBack,
                    RollbackOutcome::ClusterNotUndone(j.cluster.clone()),
                )
            } else {
                (
                    RunStatus::RollbackIncomplete,
                    RollbackOutcome::Incomplete(failures),
                )
            };
            if let Err(e) = status(s) {
                return e;
            }
            outcome
        };
        EngineError::Failed {
            component: component.into(),
            host,
            source: Box::new(source),
            rollback,
            report: Box::new(report),
        }
    }

    /// The batched probe: on every reachable host, every selected component's resources in
    /// one round trip (hosts concurrently, up to `forks`).
    async fn probe_all(
        &self,
        ctx: &Context,
        selected: &[Arc<dyn Component>],
        execs: &Execs,
        opts: &RunOptions,
        cache: &ProbeCache,
    ) {
        let sem = Arc::new(Semaphore::new(opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for host in &ctx.inventory.hosts {
            let Some(exec) = execs.get(&host.hostname).cloned() else {
                continue;
            };
            let sets: Vec<(String, Vec<Resource>)> = selected
                .iter()
                .filter(|c| c.applies_to(host))
                .filter_map(|c| {
                    let r = match opts.mode {
                        Mode::Install => c.desired(ctx, host),
                        Mode::Uninstall => c.uninstall(ctx, host),
                    };
                    // A component that cannot declare its resources reports it in its turn.
                    r.ok().map(|r| (c.name().to_string(), r))
                })
                .collect();
            let sem = sem.clone();
            let name = host.hostname.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                (name, ProbeCache::observe(exec.as_ref(), sets).await)
            });
        }
        while let Some(j) = set.join_next().await {
            if let Ok((name, Some(o))) = j {
                cache.insert(&name, o);
            }
        }
    }

    /// The packages-first phase of an install: on every host at once (up to `forks`), what
    /// each component declares before its packages, then one install of every component's
    /// missing packages, each change journaled first like any other.
    #[allow(clippy::too_many_arguments)]
    async fn packages_phase(
        &self,
        ctx: &Context,
        selected: &[Arc<dyn Component>],
        execs: &Execs,
        opts: &RunOptions,
        shared: &mut Shared,
        journal: &Arc<Mutex<Journal>>,
        report: &mut RunReport,
    ) -> Result<(), (Option<String>, ComponentError)> {
        let mut plans = Vec::new();
        for host in &ctx.inventory.hosts {
            let Some(exec) = execs.get(&host.hostname) else {
                continue;
            };
            let mut sets = Vec::new();
            let mut unprobed = Vec::new();
            for c in selected.iter().filter(|c| c.applies_to(host)) {
                let desired = c
                    .desired(ctx, host)
                    .map_err(|e| (Some(host.hostname.clone()), e))?;
                match shared.cache.peek(&host.hostname, c.name(), &desired) {
                    Some(obs) => sets.push((c.name().to_string(), desired, obs)),
                    None => unprobed.push((c.name().to_string(), desired)),
                }
            }
            if !unprobed.is_empty() {
                // The batched probe failed here: probe what is left now, still in one trip.
                let all: Vec<Resource> = unprobed
                    .iter()
                    .flat_map(|(_, r)| r.iter().cloned())
                    .collect();
                let mut obs = exec
                    .probe(&all)
                    .await
                    .map_err(|e| (Some(host.hostname.clone()), ComponentError::Exec(e)))?
                    .into_iter();
                for (name, desired) in unprobed {
                    let o: Vec<Observed> = obs.by_ref().take(desired.len()).collect();
                    sets.push((name, desired, o));
                }
                let order: Vec<&str> = selected.iter().map(|c| c.name()).collect();
                sets.sort_by_key(|(n, _, _)| order.iter().position(|o| o == n));
            }
            let plan = packages_first(&sets, &self.redactor);
            if plan.install.is_some() || !plan.before.is_empty() {
                plans.push((host.hostname.clone(), exec.clone(), plan));
            }
        }
        if plans.is_empty() {
            return Ok(());
        }
        // A rolling component that refuses its roll (kept data with no kept primary) stops
        // the run here, before any host is changed.
        for comp in selected.iter().filter(|c| c.rolling()) {
            if !plans
                .iter()
                .any(|(_, _, p)| p.components.iter().any(|c| c == comp.name()))
            {
                continue;
            }
            let hx: Vec<HostExec> = ctx
                .inventory
                .hosts
                .iter()
                .filter(|h| comp.applies_to(h))
                .filter_map(|h| {
                    Some(HostExec {
                        host: h.clone(),
                        exec: execs.get(&h.hostname)?.clone(),
                    })
                })
                .collect();
            comp.roll_order(ctx, &hx).await.map_err(|e| (None, e))?;
        }
        self.progress.event(&Event::ComponentStart {
            component: PACKAGES.into(),
            module: 0,
            hosts: plans.len(),
        });
        let sem = Arc::new(Semaphore::new(opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (i, (hostname, exec, plan)) in plans.into_iter().enumerate() {
            for (c, files) in &plan.changed_files {
                shared
                    .changed
                    .insert((hostname.clone(), c.clone()), files.clone());
            }
            for (c, services) in &plan.absent_services {
                shared
                    .absent_services
                    .insert((hostname.clone(), c.clone()), services.clone());
            }
            shared.cache.invalidate(&hostname);
            let (sem, journal, artifacts, progress) = (
                sem.clone(),
                journal.clone(),
                self.artifacts.clone(),
                self.progress.clone(),
            );
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let mut r = Ok(());
                for (component, changes) in &plan.before {
                    r = apply_changes(
                        exec.as_ref(),
                        &artifacts,
                        &hostname,
                        component,
                        changes,
                        &journal,
                    )
                    .await;
                    if r.is_err() {
                        break;
                    }
                }
                if let (Ok(()), Some(install)) = (&r, &plan.install) {
                    r = apply_changes(
                        exec.as_ref(),
                        &artifacts,
                        &hostname,
                        PACKAGES,
                        std::slice::from_ref(install),
                        &journal,
                    )
                    .await;
                }
                let r = r.map(|()| HostPlan {
                    host: hostname.clone(),
                    module: 0,
                    component: PACKAGES.into(),
                    unreachable: false,
                    changes: plan.changes(),
                });
                host_event(progress.as_ref(), PACKAGES, &hostname, &r);
                (i, hostname, r)
            });
        }
        let mut results = Vec::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok(r) => results.push(r),
                Err(e) => {
                    return Err((
                        None,
                        ComponentError::Bootstrap {
                            component: PACKAGES.into(),
                            reason: format!("task failed: {e}"),
                        },
                    ))
                }
            }
        }
        results.sort_by_key(|r| r.0);
        let mut first_err = None;
        for (_, hostname, r) in results {
            let entry = report.hosts.entry(hostname.clone()).or_default();
            match r {
                Ok(hp) => {
                    entry.changed += hp.changes.len();
                    report.plan.hosts.push(hp);
                }
                Err(e) => {
                    entry.failed = Some(self.redactor.redact(&e.to_string()));
                    first_err.get_or_insert((Some(hostname), e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Replays the last failed run's journal from `state_dir` (for `kbz-install rollback`).
    /// Hosts that cannot be reached are listed and kept in the journal; the others are rolled
    /// back. Cluster changes the run made are named, never claimed undone.
    pub async fn rollback_last(&self, opts: &RunOptions) -> Result<RollbackSummary, EngineError> {
        let dir = opts
            .state_dir
            .as_deref()
            .ok_or_else(|| EngineError::Usage("rollback needs a state directory".into()))?;
        let _lock = RunLock::acquire(dir, "kbz-install rollback")?;
        let mut journal = Journal::load(dir)?;
        if !journal.needs_rollback() {
            return Err(JournalError::NothingToRollBack(dir.display().to_string()).into());
        }
        let mut report = RunReport::default();
        // Reach what can be reached: an unreachable host does not stop the others' rollback.
        let execs = self
            .connect_all(
                &RunOptions {
                    dry_run: true,
                    ..opts.clone()
                },
                &mut report,
            )
            .await?;
        let steps = journal.undo_plan().iter().map(|(_, ops)| ops.len()).sum();
        // A stale lock of this controller is what a killed run leaves: rollback is its remedy.
        let host_locks = HostLocks::acquire_with(
            execs.values().cloned(),
            &opts.host_lock,
            "kbz-install rollback",
            true,
        )
        .await?;
        let stale_locks_taken_over: Vec<String> = host_locks
            .taken_over()
            .iter()
            .map(|(h, o)| format!("{h}: {o}"))
            .collect();
        let failures = self.rollback_journal(&journal, &execs).await;
        host_locks.release().await;
        if failures.is_empty() {
            journal.set_status(RunStatus::RolledBack)?;
            Ok(RollbackSummary {
                steps,
                cluster_not_undone: journal.cluster.clone(),
                stale_locks_taken_over,
            })
        } else {
            // Keep only what is left to undo, so a retry replays just that.
            let left: Vec<String> = journal
                .undo_plan()
                .into_iter()
                .map(|(h, _)| h)
                .filter(|h| failures.iter().any(|f| f.starts_with(&format!("{h}: "))))
                .collect();
            journal.retain_hosts(&left)?;
            journal.set_status(RunStatus::RollbackIncomplete)?;
            Err(EngineError::RollbackIncomplete(failures))
        }
    }

    /// One facts round trip per reachable host; refuses unsupported operating systems.
    async fn gather_facts(&self, execs: &Execs) -> Result<Context, EngineError> {
        let mut set = tokio::task::JoinSet::new();
        for (name, e) in execs {
            let (name, e) = (name.clone(), e.clone());
            set.spawn(async move { (name, e.facts().await) });
        }
        let mut facts = BTreeMap::new();
        let mut failed = Vec::new();
        while let Some(j) = set.join_next().await {
            let Ok((name, r)) = j else { continue };
            match r {
                Ok(f) if f.supported_os() || f.os_id.is_empty() => {
                    facts.insert(name, f);
                }
                Ok(f) => failed.push(ComponentError::UnsupportedOs {
                    host: name,
                    os: format!("{} {}", f.os_id, f.os_version),
                }),
                Err(e) => failed.push(ComponentError::Exec(e)),
            }
        }
        if let Some(first) = failed.into_iter().next() {
            return Err(EngineError::Failed {
                component: "facts".into(),
                host: None,
                source: Box::new(first),
                rollback: RollbackOutcome::NothingApplied,
                report: Box::default(),
            });
        }
        Ok(self.ctx.with_facts(facts))
    }

    async fn connect_all(
        &self,
        opts: &RunOptions,
        report: &mut RunReport,
    ) -> Result<Execs, EngineError> {
        let sem = Arc::new(Semaphore::new(opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for h in self.ctx.inventory.hosts.iter().cloned() {
            let c = self.connector.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let r = c.connect(&h).await;
                (h.hostname, r)
            });
        }
        let mut execs = Execs::new();
        let mut failed = Vec::new();
        while let Some(j) = set.join_next().await {
            let Ok((name, r)) = j else { continue };
            match r {
                Ok(e) => {
                    execs.insert(name, e);
                }
                Err(e) if opts.dry_run => {
                    self.progress.event(&Event::Unreachable {
                        host: name.clone(),
                        error: e.to_string(),
                    });
                    report.hosts.entry(name).or_default().unreachable = true;
                }
                Err(e) => failed.push((name, e)),
            }
        }
        if !failed.is_empty() {
            failed.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(EngineError::Connect(failed));
        }
        Ok(execs)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_component(
        &self,
        ctx: &Context,
        comp: &Arc<dyn Component>,
        hosts: &[Host],
        execs: &Execs,
        opts: &RunOptions,
        journal: &Arc<Mutex<Journal>>,
        shared: &Shared,
        report: &mut RunReport,
    ) -> Result<(), (Option<String>, ComponentError)> {
        // Rolling components are planned on every host at once, then changed one host at a
        // time, waiting for each to serve again; hosts without changes are not waited on.
        let rolling = comp.rolling() && !opts.dry_run;
        let sem = Arc::new(Semaphore::new(opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let desired = match opts.mode {
                Mode::Install => comp.desired(ctx, host),
                Mode::Uninstall => comp.uninstall(ctx, host),
            }
            .map_err(|e| (Some(host.hostname.clone()), e))?;
            let exec = execs.get(&host.hostname).cloned();
            let sem = sem.clone();
            let journal = journal.clone();
            let redactor = self.redactor.clone();
            let artifacts = self.artifacts.clone();
            let progress = self.progress.clone();
            let name = comp.name();
            let module = comp.module();
            let hostname = host.hostname.clone();
            let apply_now = !opts.dry_run && !rolling;
            let cached = shared.cache.take(&hostname, name, &desired);
            let key = (hostname.clone(), name.to_string());
            let before = Before {
                files: shared.changed.get(&key).cloned().unwrap_or_default(),
                absent_services: shared
                    .absent_services
                    .get(&key)
                    .cloned()
                    .unwrap_or_default(),
            };
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let mut r = plan_host(
                    exec.as_deref(),
                    &hostname,
                    name,
                    &desired,
                    cached,
                    &before,
                    &redactor,
                )
                .await;
                if let (true, Ok(hp), Some(exec)) = (apply_now, &r, &exec) {
                    if let Err(e) = apply_changes(
                        exec.as_ref(),
                        &artifacts,
                        &hostname,
                        name,
                        &hp.changes,
                        &journal,
                    )
                    .await
                    {
                        r = Err(e);
                    }
                }
                if !rolling {
                    host_event(progress.as_ref(), name, &hostname, &r);
                }
                (i, hostname, module, desired.len(), r)
            });
        }
        while let Some(j) = set.join_next().await {
            match j {
                Ok(r) => results.push(r),
                Err(e) => {
                    return Err((
                        None,
                        ComponentError::Bootstrap {
                            component: comp.name().into(),
                            reason: format!("task failed: {e}"),
                        },
                    ))
                }
            }
        }
        results.sort_by_key(|r| r.0);
        let changes = results
            .iter()
            .any(|r| r.4.as_ref().is_ok_and(|hp| !hp.changes.is_empty()));
        if rolling && results.iter().all(|r| r.4.is_ok()) {
            // The component picks the order (a kept primary first); nothing is changed yet.
            if changes && opts.mode == Mode::Install {
                let hx: Vec<HostExec> = results
                    .iter()
                    .filter_map(|r| {
                        let exec = execs.get(r.1.as_str())?.clone();
                        let host = hosts.iter().find(|h| h.hostname == r.1)?.clone();
                        Some(HostExec { host, exec })
                    })
                    .collect();
                let order = comp.roll_order(ctx, &hx).await.map_err(|e| (None, e))?;
                results.sort_by_key(|r| order.iter().position(|n| n == &r.1).unwrap_or(usize::MAX));
            }
            let mut stopped = false;
            for (_, hostname, _, _, r) in results.iter_mut() {
                let Ok(hp) = r else { continue };
                if stopped {
                    // Never reached: nothing was applied here.
                    hp.changes.clear();
                    continue;
                }
                if !hp.changes.is_empty() {
                    let (Some(exec), Some(host)) = (
                        execs.get(hostname.as_str()),
                        hosts.iter().find(|h| &h.hostname == hostname),
                    ) else {
                        continue;
                    };
                    let hx = HostExec {
                        host: host.clone(),
                        exec: exec.clone(),
                    };
                    let applied = apply_changes(
                        exec.as_ref(),
                        &self.artifacts,
                        hostname,
                        comp.name(),
                        &hp.changes,
                        journal,
                    )
                    .await;
                    let ready = match applied {
                        Ok(()) if opts.mode == Mode::Install => {
                            comp.host_ready(ctx, &hx, true).await
                        }
                        other => other,
                    };
                    if let Err(e) = ready {
                        *r = Err(e);
                    }
                }
                host_event(self.progress.as_ref(), comp.name(), hostname, r);
                // Stop the roll at the first host that does not come back.
                stopped = r.is_err();
            }
            results.sort_by_key(|r| r.0);
        }
        let mut first_err = None;
        for (_, hostname, module, n_desired, r) in results {
            if !opts.dry_run && r.as_ref().map_or(true, |hp| !hp.changes.is_empty()) {
                shared.cache.invalidate(&hostname);
            }
            let entry = report.hosts.entry(hostname.clone()).or_default();
            match r {
                Ok(mut hp) => {
                    hp.module = module;
                    entry.changed += hp.changes.len();
                    entry.ok += n_desired.saturating_sub(hp.changes.len());
                    report.plan.hosts.push(hp);
                }
                Err(e) => {
                    entry.failed = Some(self.redactor.redact(&e.to_string()));
                    if first_err.is_none() {
                        first_err = Some((Some(hostname), e));
                    }
                }
            }
        }
        match first_err {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    async fn rollback_journal(&self, journal: &Journal, execs: &Execs) -> Vec<String> {
        let mut set = tokio::task::JoinSet::new();
        let mut failures = Vec::new();
        for (host, ops) in journal.undo_plan() {
            let Some(exec) = execs.get(&host).cloned() else {
                failures.push(format!(
                    "{host}: not connected, {} undo step(s) not run",
                    ops.len()
                ));
                continue;
            };
            self.progress.event(&Event::RollbackStart {
                host: host.clone(),
                steps: ops.len(),
            });
            let artifacts = self.artifacts.clone();
            set.spawn(async move {
                let mut failed = Vec::new();
                for op in &ops {
                    if let Err(e) = artifacts.apply(exec.as_ref(), op).await {
                        failed.push(format!("{host}: {} ({e})", op.describe()));
                    }
                }
                failed
            });
        }
        while let Some(j) = set.join_next().await {
            if let Ok(f) = j {
                failures.extend(f);
            }
        }
        failures
    }
}

/// What the packages-first phase did on a host, as one component's plan must know it.
#[derive(Default)]
struct Before {
    /// Files it changed (services restart on them).
    files: std::collections::BTreeSet<String>,
    /// Services (resource id, observation) that did not exist before it.
    absent_services: Vec<(String, Observed)>,
}

/// Probes one host (or plans it fresh when unreachable; or takes the batched probe's
/// answer) and diffs: read-only.
async fn plan_host(
    exec: Option<&dyn Executor>,
    hostname: &str,
    component: &str,
    desired: &[Resource],
    cached: Option<Vec<Observed>>,
    before: &Before,
    redactor: &Arc<Redactor>,
) -> Result<HostPlan, ComponentError> {
    let (mut observed, unreachable) = match (exec, cached) {
        (Some(_), Some(o)) => (o, false),
        (Some(e), None) => (e.probe(desired).await?, false),
        (None, _) => (desired.iter().map(fresh).collect(), true),
    };
    // A unit its package brought in this run is planned as new (started, enabled), as it
    // was before the packages went first.
    for (r, o) in desired.iter().zip(observed.iter_mut()) {
        if let Some((_, b)) = before.absent_services.iter().find(|(id, _)| *id == r.id()) {
            *o = b.clone();
        }
    }
    Ok(HostPlan {
        host: hostname.into(),
        module: 0,
        component: component.into(),
        unreachable,
        changes: diff_after(desired, &observed, redactor, &before.files),
    })
}

/// Applies a host's changes in order, journaling each undo before its change starts.
async fn apply_changes(
    exec: &dyn Executor,
    artifacts: &Artifacts,
    hostname: &str,
    component: &str,
    changes: &[crate::plan::Change],
    journal: &Mutex<Journal>,
) -> Result<(), ComponentError> {
    for c in changes {
        // Write-ahead: the undo is on disk before the change starts, so a crash midway
        // still leaves a journal that `kbz-install rollback` can replay.
        lock(journal)
            .record(JournalEntry {
                host: hostname.into(),
                component: component.into(),
                did: c.op.describe(),
                undo: c.undo.clone(),
            })
            .map_err(ComponentError::Journal)?;
        artifacts.apply(exec, &c.op).await?;
    }
    Ok(())
}

fn host_event(
    progress: &dyn Progress,
    component: &str,
    host: &str,
    r: &Result<HostPlan, ComponentError>,
) {
    match r {
        Ok(hp) => progress.event(&Event::HostDone {
            component: component.into(),
            host: host.into(),
            changed: hp.changes.len(),
        }),
        Err(e) => progress.event(&Event::HostFailed {
            component: component.into(),
            host: host.into(),
            error: e.to_string(),
        }),
    }
}

/// The catalogue code for a failed operation: by kind of operation when the command ran and
/// failed, else the transport's own code (timeout, lost session).
pub fn op_code(op: &Op, e: &ExecError) -> Code {
    let ExecError::CommandFailed { stderr, .. } = e else {
        return e.code();
    };
    match op {
        Op::InstallPackages { .. }
            if [
                "Failed to fetch",
                "Unable to fetch",
                "Could not resolve",
                "Temporary failure resolving",
                "Could not connect",
            ]
            .iter()
            .any(|m| stderr.contains(m)) =>
        {
            Code::E019
        }
        Op::InstallPackages { .. } | Op::RemovePackages { .. } => Code::E023,
        Op::EnableService { .. }
        | Op::DisableService { .. }
        | Op::StartService { .. }
        | Op::StopService { .. }
        | Op::RestartService { .. } => Code::E024,
        Op::SetSysctl { .. }
        | Op::LoadModule { .. }
        | Op::UnloadModule { .. }
        | Op::SwapOff
        | Op::SwapOn => Code::E025,
        Op::WriteFile { .. }
        | Op::RemoveFile { .. }
        | Op::EnsureDir { .. }
        | Op::RemoveDir { .. }
        | Op::PutArtifact { .. }
        | Op::SaveArtifact { .. }
        | Op::RestoreArtifact { .. } => Code::E022,
        Op::Run { .. } => Code::E021,
    }
}

/// What a never-configured host looks like, for planning unreachable hosts.
pub fn fresh(r: &Resource) -> Observed {
    match r {
        Resource::File { .. } => Observed::File {
            content: None,
            mode: None,
            owner: None,
        },
        Resource::Directory { .. } => Observed::Directory {
            exists: false,
            mode: None,
            owner: None,
        },
        Resource::Package { .. } => Observed::Package { installed: false },
        Resource::Service { .. } => Observed::Service {
            exists: false,
            enabled: false,
            active: false,
        },
        Resource::Sysctl { .. } => Observed::Sysctl { value: None },
        Resource::KernelModule { .. } => Observed::KernelModule { loaded: false },
        Resource::SwapOff => Observed::Swap {
            active: false,
            fstab: Vec::new(),
        },
        Resource::Command { .. } => Observed::Command { satisfied: false },
        Resource::Artifact { .. } => Observed::Artifact {
            sha256: None,
            mode: None,
            owner: None,
        },
    }
}

fn push_timing(report: &mut RunReport, component: &str, phase: &str, d: Duration) {
    report.timings.push(Timing::new(component, phase, d));
}

fn lock(j: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    j.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies a list of operations in order (for components' cluster steps and tools).
pub async fn apply_all(exec: &dyn Executor, ops: &[Op]) -> Result<(), ExecError> {
    for op in ops {
        exec.apply(op).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(host: Option<&str>, source: ComponentError) -> EngineError {
        EngineError::Failed {
            component: "etcd".into(),
            host: host.map(String::from),
            source: Box::new(source),
            rollback: RollbackOutcome::RolledBack,
            report: Box::default(),
        }
    }

    #[test]
    fn a_cluster_failure_gives_the_diagnostic_its_host_and_fix() {
        let quorum = || ComponentError::Cluster {
            code: Code::E036,
            message: "etcd has no quorum after waiting 5s: 1 of 3 members healthy".into(),
            host: Some("db1".into()),
            hint: Some("start etcd on the other members".into()),
        };
        let d = failed(None, quorum()).diagnostic();
        assert_eq!(d.code, Code::E036);
        assert_eq!(d.host.as_deref(), Some("db1"));
        assert_eq!(d.hint.as_deref(), Some("start etcd on the other members"));
        assert!(
            d.message.starts_with("etcd failed: etcd has no quorum"),
            "{}",
            d.message
        );
        // The host of the failed step wins over the one the cluster check ran on.
        let d = failed(Some("db2"), quorum()).diagnostic();
        assert_eq!(d.host.as_deref(), Some("db2"));
        // Other failures keep their text as it was, with no separate fix.
        let d = failed(None, ComponentError::MissingSecret("x".into())).diagnostic();
        assert_eq!((d.host, d.hint), (None, None));
    }
}
