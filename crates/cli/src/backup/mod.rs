//! kbz-backup's library half: `run`, `list`, `verify`, `restore`, `drill`, `prune` (this
//! file and [`restore`]) and `schedule` ([`schedule`]). Each command loads the session
//! (secrets include the `backup_encryption` key, generated into the secrets file on first
//! use and masked like every secret), takes `STATE_DIR/backup.lock` (E049 when another
//! kbz-backup holds it), finds the `backup`-role host (E041), connects the hosts it needs and
//! calls the components' [`Backup`]s from kbz-stack. Results are printed (table or
//! `--json`), logged (`STATE_DIR/logs/kbz-backup.jsonl`, one `backup`/`verify`/`drill`/
//! `restore`/`prune` event per component) and notified (`Event::backup_result`, and a drill
//! or restore event). Exit 0 when everything succeeded, 1 when something failed, 3 when the
//! backup host cannot be reached, 64 bad input.

pub mod output;
pub mod restore;
pub mod schedule;

use kbz_core::backup::{
    self, Backup, BackupEnv, BackupError, BackupRequest, Manifest, Repository, Storage, Target,
};
use kbz_core::component::HostExec;
use kbz_core::executor::Connector;
use kbz_core::runlock::RunLock;
use kbz_core::{Host, Level, Secret};
use kbz_errors::{Code, Diagnostic, HasCode};
use kbz_notify::{BackupSummary, Event};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::session::{self, warn_failed, Session};
use crate::{connect, exit, runtime, ui, Common, Failure};

/// The binary's name (log file, lock owner).
pub const BIN: &str = "kbz-backup";

/// A prepared kbz-backup command: session, runtime, the backup host and its repository,
/// the component backups and the held lock.
pub struct Prepared {
    /// Inputs, context and notifiers.
    pub session: Session,
    /// The async runtime.
    pub rt: tokio::runtime::Runtime,
    /// The connector of every host.
    pub connector: Arc<dyn Connector>,
    /// The backup host, connected.
    pub backup_host: HostExec,
    /// The repository on it.
    pub repo: Repository,
    /// Every component's backups (kbz-stack), in module order.
    pub backups: Vec<Arc<dyn Backup>>,
    /// The encryption key, when `[backup] encrypt` is on.
    pub key: Option<Secret>,
    connected: std::sync::Mutex<BTreeMap<String, HostExec>>,
    _lock: Option<RunLock>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("backup_host", &self.backup_host.host.hostname)
            .field("repo", &self.repo.dir())
            .finish()
    }
}

/// A [`BackupError`] as the failure it is: unreachable hosts exit 3, input problems 64,
/// everything else 1.
pub fn failure(e: &BackupError) -> Failure {
    let exit = match e {
        BackupError::NoBackupHost => exit::INPUT,
        BackupError::Unreachable { .. } => exit::UNREACHABLE,
        BackupError::Exec(x) if matches!(x.code(), Code::E011 | Code::E012 | Code::E016) => {
            exit::UNREACHABLE
        }
        _ => exit::FAILED,
    };
    Failure::new(e.diagnostic(), exit)
}

/// Loads the session, takes the backup lock for `command`, connects the backup host.
pub fn prepare(c: &Common, command: &str) -> Result<Prepared, Failure> {
    if c.inventory.is_none() {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "kbz-backup needs the --inventory of the cluster",
        )
        .hint("kbz-backup --inventory servers.tsv list")]));
    }
    let backups = kbz_stack::backups();
    let extra: Vec<String> = std::iter::once(backup::crypt::KEY_SECRET.to_string())
        .chain(backups.iter().flat_map(|b| b.secret_names()))
        .collect();
    let session = session::prepare_with(
        c,
        BIN,
        &kbz_stack::components(),
        extra,
        session::Secrets::SecretsOnly,
    )?;
    let lock = match &session.inputs.state_dir {
        Some(dir) => Some(
            RunLock::acquire_file(dir, "backup.lock", &format!("{BIN} {command}"))
                .map_err(|e| failure(&BackupError::Locked(e.to_string())))?,
        ),
        None => None,
    };
    let host = backup::backup_host(&session.ctx.inventory)
        .map_err(|e| failure(&e))?
        .clone();
    let connector = connect::connector(&session.inputs, c, false)?;
    let rt = runtime()?;
    let cfg = &session.ctx.config.backup;
    let exec = rt.block_on(connector.connect(&host)).map_err(|e| {
        failure(&BackupError::Unreachable {
            host: host.hostname.clone(),
            dir: cfg.dir.clone(),
            reason: e.to_string(),
        })
    })?;
    let backup_host = HostExec { host, exec };
    let repo = Repository::new(backup_host.exec.clone(), &cfg.dir);
    let key = if cfg.encrypt {
        session.ctx.secrets.get(backup::crypt::KEY_SECRET).cloned()
    } else {
        None
    };
    let connected = std::sync::Mutex::new(BTreeMap::from([(
        backup_host.host.hostname.clone(),
        backup_host.clone(),
    )]));
    Ok(Prepared {
        session,
        rt,
        connector,
        backup_host,
        repo,
        backups,
        key,
        connected,
        _lock: lock,
    })
}

impl Prepared {
    /// The component backups `only` selects (all without it; E010 with the names when it
    /// names none), leaving out components no inventory host has.
    pub fn select(&self, only: Option<&str>) -> Result<Vec<Arc<dyn Backup>>, Failure> {
        if let Some(name) = only {
            return match self.backups.iter().find(|b| b.component() == name) {
                Some(b) => Ok(vec![b.clone()]),
                None => Err(Failure::input(vec![Diagnostic::new(
                    Code::E010,
                    format!(
                        "no backups of `{name}`; components with backups: {}",
                        self.backups
                            .iter()
                            .map(|b| b.component())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )])),
            };
        }
        Ok(self
            .backups
            .iter()
            .filter(|b| {
                self.session
                    .ctx
                    .inventory
                    .hosts
                    .iter()
                    .any(|h| b.applies_to(h))
            })
            .cloned()
            .collect())
    }

    /// The hosts of `b`, each connected once per command.
    pub fn hosts_of(&self, b: &dyn Backup) -> Result<Vec<HostExec>, BackupError> {
        self.hosts_where(|h| b.applies_to(h))
    }

    /// The inventory's hosts for which `applies` holds, in inventory order, each connected
    /// once per command.
    pub fn hosts_where(
        &self,
        applies: impl Fn(&Host) -> bool,
    ) -> Result<Vec<HostExec>, BackupError> {
        let hosts: Vec<Host> = self
            .session
            .ctx
            .inventory
            .hosts
            .iter()
            .filter(|h| applies(h))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for h in hosts {
            let known = self
                .connected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&h.hostname)
                .cloned();
            let hx = match known {
                Some(hx) => hx,
                None => {
                    let exec = self.rt.block_on(self.connector.connect(&h))?;
                    let hx = HostExec { host: h, exec };
                    self.connected
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(hx.host.hostname.clone(), hx.clone());
                    hx
                }
            };
            out.push(hx);
        }
        Ok(out)
    }

    /// Every backup in the repository (unreadable manifests are warned about).
    pub fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let (ms, bad) = self.rt.block_on(self.repo.list())?;
        for b in bad {
            crate::errln!("warning: skipped a manifest: {b}");
        }
        Ok(ms)
    }

    /// Sends one notification (failures to deliver are warnings).
    pub fn notify(&self, event: &Event) {
        if self.session.notifiers.has_enabled() {
            warn_failed(self.rt.block_on(self.session.notifiers.send(event)));
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.session.ctx.config.cluster.name
    }

    fn location(&self, m: &Manifest) -> String {
        format!("{}:{}", self.repo.host(), self.repo.backup_dir(m))
    }
}

/// `run` options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// One component only.
    pub component: Option<String>,
    /// Full or differential (`None`: each component's default).
    pub kind: Option<backup::BackupKind>,
    /// Prune what retention no longer keeps after the backups (when all succeeded).
    pub prune: bool,
}

/// Takes one backup of `b`: the component's data, sealed and stored with its manifest.
fn take(
    p: &Prepared,
    b: &dyn Backup,
    kind: Option<backup::BackupKind>,
) -> Result<Manifest, BackupError> {
    let started = chrono::Utc::now();
    let req = BackupRequest {
        id: backup::manifest::new_id(b.component(), started),
        kind,
    };
    let hosts = p.hosts_of(b)?;
    let env = BackupEnv {
        ctx: &p.session.ctx,
        hosts: &hosts,
        backup_host: &p.backup_host,
        repo: &p.repo,
    };
    p.rt.block_on(p.repo.prepare())?;
    let taken = p.rt.block_on(b.backup(&env, &req))?;
    let key = match b.storage() {
        Storage::Artifact => p.key.as_ref(),
        Storage::Managed => None,
    };
    let (m, bytes) = backup::seal(b.component(), &req, &taken, started, key)?;
    p.rt.block_on(p.repo.store(&m, bytes.as_deref()))?;
    Ok(m)
}

/// `kbz-backup run`.
pub fn run(c: &Common, o: &RunOptions) -> u8 {
    let p = match prepare(c, "run") {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let chosen = match p.select(o.component.as_deref()) {
        Ok(b) => b,
        Err(f) => return f.report(c.json),
    };
    let bar = ui::progress(chosen.len() as u64, "backing up", c.json);
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for b in &chosen {
        bar.set_message(format!("backing up {}", b.component()));
        let t = Instant::now();
        match take(&p, b.as_ref(), o.kind) {
            Ok(m) => {
                tracing::info!(event = "backup", component = b.component(), id = %m.id, kind = %m.kind, source = %m.source_host, size = m.size_bytes, ms = t.elapsed().as_millis() as u64, ok = true, "backup stored");
                let summary = BackupSummary {
                    location: p.location(&m),
                    size_bytes: m.size_bytes,
                    duration: t.elapsed(),
                };
                p.notify(&Event::backup_result(
                    p.cluster(),
                    b.component(),
                    Ok(&summary),
                ));
                done.push(m);
            }
            Err(e) => {
                let d = e.diagnostic();
                tracing::error!(event = "backup", component = b.component(), code = %d.code, error = %d.message, ok = false, "backup failed");
                p.notify(&Event::backup_result(p.cluster(), b.component(), Err(&d)));
                errors.push(d);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    output::print_backups(&done, &errors, c.json);
    if errors.is_empty() && o.prune {
        let (removed, kept, perr) = prune_all(&p);
        if !c.json {
            output::print_prune(&removed, kept, &perr, false);
        }
        errors.extend(perr);
    }
    if errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// `kbz-backup list`.
pub fn list(c: &Common) -> u8 {
    let p = match prepare(c, "list") {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    match p.list() {
        Ok(ms) => {
            let cfg = &p.session.ctx.config.backup;
            let keep = backup::Retention {
                keep_full: cfg.keep_full,
                keep_days: cfg.keep_days,
            };
            let gone: Vec<String> = backup::manifest::prune_plan(&ms, keep, chrono::Utc::now())
                .into_iter()
                .map(|m| m.id.clone())
                .collect();
            output::print_list(&ms, &gone, p.repo.host(), p.repo.dir(), c.json);
            exit::OK
        }
        Err(e) => failure(&e).report(c.json),
    }
}

/// `kbz-backup verify [--id ID]`: every stored artifact's sha256 and size on the backup
/// host, each managed component's own check, and with `--id` the artifact read back and
/// decrypted too.
pub fn verify(c: &Common, id: Option<&str>) -> u8 {
    let p = match prepare(c, "verify") {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let all = match p.list() {
        Ok(ms) => ms,
        Err(e) => return failure(&e).report(c.json),
    };
    let ms: Vec<Manifest> = match id {
        Some(id) => match all.iter().find(|m| m.id == id) {
            Some(m) => vec![m.clone()],
            None => {
                let e = BackupError::NotFound {
                    component: "any component".into(),
                    what: format!(
                        "has id `{id}`; `kbz-backup list` shows the {} there are",
                        all.len()
                    ),
                };
                return failure(&e).report(c.json);
            }
        },
        None => all,
    };
    let mut rows: Vec<(String, Result<String, Diagnostic>)> = Vec::new();
    match p.rt.block_on(p.repo.checksums(&ms)) {
        Ok(checked) => {
            for (mid, ch) in checked {
                let m = ms.iter().find(|m| m.id == mid);
                let r = match ch {
                    backup::repo::Checked::Good => Ok("sha256 and size match".to_string()),
                    backup::repo::Checked::Bad(why) => Err(BackupError::Verify {
                        id: mid.clone(),
                        path: m.and_then(|m| p.repo.artifact_path(m)).unwrap_or_default(),
                        reason: why,
                    }
                    .diagnostic()),
                };
                rows.push((mid, r));
            }
        }
        Err(e) => return failure(&e).report(c.json),
    }
    if id.is_some() {
        for m in ms.iter().filter(|m| m.stored.is_some()) {
            let deep =
                p.rt.block_on(p.repo.fetch(m))
                    .and_then(|bytes| backup::unseal(m, bytes, p.key.as_ref()));
            if let Err(e) = deep {
                rows.retain(|(i, _)| i != &m.id);
                rows.push((m.id.clone(), Err(e.diagnostic())));
            } else if let Some(r) = rows.iter_mut().find(|(i, _)| i == &m.id) {
                r.1 =
                    r.1.clone()
                        .map(|_| "sha256 and size match, decrypts to the recorded sha256".into());
            }
        }
    }
    for b in p.backups.iter().filter(|b| b.storage() == Storage::Managed) {
        let mine: Vec<Manifest> = ms
            .iter()
            .filter(|m| m.component == b.component())
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let r = p.hosts_of(b.as_ref()).and_then(|hosts| {
            let env = BackupEnv {
                ctx: &p.session.ctx,
                hosts: &hosts,
                backup_host: &p.backup_host,
                repo: &p.repo,
            };
            p.rt.block_on(b.verify(&env, &mine))
        });
        for m in &mine {
            rows.push((
                m.id.clone(),
                r.as_ref()
                    .map(|_| format!("{} verified by its tool", b.component()))
                    .map_err(|e| e.diagnostic()),
            ));
        }
    }
    for (mid, r) in &rows {
        match r {
            Ok(detail) => {
                tracing::info!(event = "verify", id = %mid, ok = true, detail = %detail, "verified")
            }
            Err(d) => {
                tracing::error!(event = "verify", id = %mid, ok = false, code = %d.code, error = %d.message, "verification failed")
            }
        }
    }
    let failed: Vec<&Diagnostic> = rows.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    if !failed.is_empty() {
        let d = failed[0];
        p.notify(&Event::new(
            Level::Error,
            format!("Backup verification on {} failed: {}", p.cluster(), d.code),
            failed
                .iter()
                .map(|d| d.render_plain())
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    output::print_verify(&rows, c.json);
    if failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// `kbz-backup drill [--component X]`: the latest backup of each component restored into a
/// scratch instance on the backup host and compared with its manifest.
pub fn drill(c: &Common, only: Option<&str>) -> u8 {
    let p = match prepare(c, "drill") {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let chosen = match p.select(only) {
        Ok(b) => b,
        Err(f) => return f.report(c.json),
    };
    let all = match p.list() {
        Ok(ms) => ms,
        Err(e) => return failure(&e).report(c.json),
    };
    let bar = ui::progress(chosen.len() as u64, "drilling", c.json);
    let mut rows = Vec::new();
    for b in &chosen {
        bar.set_message(format!("drilling {}", b.component()));
        let t = Instant::now();
        let r = (|| {
            let m = backup::manifest::select(&all, b.component(), &Target::Latest)?;
            let bytes = match m.stored {
                Some(_) => Some(backup::unseal(
                    m,
                    p.rt.block_on(p.repo.fetch(m))?,
                    p.key.as_ref(),
                )?),
                None => None,
            };
            let hosts = p.hosts_of(b.as_ref())?;
            let env = BackupEnv {
                ctx: &p.session.ctx,
                hosts: &hosts,
                backup_host: &p.backup_host,
                repo: &p.repo,
            };
            let d = p.rt.block_on(b.drill(&env, m, bytes.as_deref()))?;
            backup::judge(b.component(), m, &d)?;
            Ok::<_, BackupError>((m.clone(), d))
        })();
        let ms = t.elapsed().as_millis() as u64;
        match &r {
            Ok((m, d)) => {
                tracing::info!(event = "drill", component = b.component(), id = %m.id, host = %d.host, restore_ms = d.restore_ms, ms, ok = true, "drill passed");
                let compared = d
                    .compared
                    .iter()
                    .map(|c| format!("{} {} = {}", c.what, c.expected, c.got))
                    .collect::<Vec<_>>()
                    .join(", ");
                p.notify(&Event::new(
                    Level::Info,
                    format!(
                        "Restore drill of {} on {} passed",
                        b.component(),
                        p.cluster()
                    ),
                    format!(
                        "Backup {} restored into a scratch instance on {} in {} ms: {compared}.",
                        m.id, d.host, d.restore_ms
                    ),
                ));
            }
            Err(e) => {
                let d = e.diagnostic();
                tracing::error!(event = "drill", component = b.component(), code = %d.code, error = %d.message, ms, ok = false, "drill failed");
                p.notify(&Event::new(
                    Level::Error,
                    format!(
                        "Restore drill of {} on {} failed: {}",
                        b.component(),
                        p.cluster(),
                        d.code
                    ),
                    format!(
                        "{}\n\nDetails: `kbz-install explain {}`.",
                        d.render_plain(),
                        d.code
                    ),
                ));
            }
        }
        rows.push((b.component().to_string(), r.map_err(|e| e.diagnostic()), ms));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ok = rows.iter().all(|(_, r, _)| r.is_ok());
    output::print_drills(&rows, c.json);
    if ok {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// `kbz-backup prune`: removes what retention no longer keeps (the tool's own backups
/// first for managed components, then the manifests and artifacts).
pub fn prune(c: &Common) -> u8 {
    let p = match prepare(c, "prune") {
        Ok(p) => p,
        Err(f) => return f.report(c.json),
    };
    let (removed, kept, errors) = prune_all(&p);
    output::print_prune(&removed, kept, &errors, c.json);
    if errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Prunes: the ids removed, the number kept and the failures (each notified and logged).
fn prune_all(p: &Prepared) -> (Vec<String>, usize, Vec<Diagnostic>) {
    let all = match p.list() {
        Ok(ms) => ms,
        Err(e) => return (Vec::new(), 0, vec![e.diagnostic()]),
    };
    let cfg = &p.session.ctx.config.backup;
    let keep = backup::Retention {
        keep_full: cfg.keep_full,
        keep_days: cfg.keep_days,
    };
    let gone: Vec<Manifest> = backup::manifest::prune_plan(&all, keep, chrono::Utc::now())
        .into_iter()
        .cloned()
        .collect();
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for b in &p.backups {
        let mine: Vec<Manifest> = gone
            .iter()
            .filter(|m| m.component == b.component())
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        if b.storage() == Storage::Managed {
            let r = p.hosts_of(b.as_ref()).and_then(|hosts| {
                let env = BackupEnv {
                    ctx: &p.session.ctx,
                    hosts: &hosts,
                    backup_host: &p.backup_host,
                    repo: &p.repo,
                };
                p.rt.block_on(b.prune(&env, &mine))
            });
            if let Err(e) = r {
                errors.push(e.diagnostic());
                continue;
            }
        }
        for m in mine {
            match p.rt.block_on(p.repo.remove(&m)) {
                Ok(()) => {
                    tracing::info!(event = "prune", component = %m.component, id = %m.id, ok = true, "pruned");
                    removed.push(m.id.clone());
                }
                Err(e) => errors.push(e.diagnostic()),
            }
        }
    }
    for d in &errors {
        tracing::error!(event = "prune", code = %d.code, error = %d.message, ok = false, "prune failed");
    }
    if let Some(d) = errors.first() {
        p.notify(&Event::new(
            Level::Error,
            format!("Backup pruning on {} failed: {}", p.cluster(), d.code),
            d.render_plain(),
        ));
    }
    (removed.clone(), all.len() - removed.len(), errors)
}

/// The absolute invocation the schedule's lines run: this program with the same inputs and
/// an explicit state directory.
fn invocation(c: &Common) -> Result<(schedule::Invocation, schedule::Schedules), Failure> {
    let i = crate::inputs::load(c).map_err(Failure::input)?;
    backup::backup_host(&i.inventory).map_err(|e| failure(&e))?;
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let program = std::env::current_exe()
        .map(|p| abs(&p))
        .unwrap_or_else(|_| BIN.into());
    let Some(state_dir) = i.state_dir.as_deref().map(abs) else {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "the schedule needs the --inventory (and its state directory) of the cluster",
        )]));
    };
    let mut args = Vec::new();
    if let Some(inv) = &c.inventory {
        args.push("--inventory".to_string());
        args.push(abs(inv).display().to_string());
    }
    if let Some(cfg) = &c.config {
        args.push("--config".into());
        args.push(abs(cfg).display().to_string());
    }
    args.push("--state-dir".into());
    args.push(state_dir.display().to_string());
    let b = &i.config.backup;
    Ok((
        schedule::Invocation {
            program,
            args,
            state_dir,
        },
        schedule::Schedules {
            full: b.full_schedule.clone(),
            diff: b.diff_schedule.clone(),
            drill: b.drill_schedule.clone(),
        },
    ))
}

/// `kbz-backup schedule install [--systemd] [--root DIR]`.
pub fn schedule_install(c: &Common, root: &std::path::Path, systemd: bool) -> u8 {
    let r = invocation(c).and_then(|(inv, s)| schedule::install(root, &inv, &s, systemd));
    match r {
        Ok(paths) => {
            if c.json {
                crate::outln!("{}", serde_json::json!({ "written": paths }));
            } else {
                for p in paths {
                    crate::outln!("wrote {}", p.display());
                }
            }
            exit::OK
        }
        Err(f) => f.report(c.json),
    }
}

/// `kbz-backup schedule remove [--root DIR]`.
pub fn schedule_remove(c: &Common, root: &std::path::Path) -> u8 {
    match schedule::remove(root) {
        Ok(paths) => {
            if c.json {
                crate::outln!("{}", serde_json::json!({ "removed": paths }));
            } else if paths.is_empty() {
                crate::outln!("no kbz-backup schedule under {}", root.display());
            } else {
                for p in paths {
                    crate::outln!("removed {}", p.display());
                }
            }
            exit::OK
        }
        Err(f) => f.report(c.json),
    }
}

/// `kbz-backup schedule show [--root DIR]`: what is installed, file by file.
pub fn schedule_show(c: &Common, root: &std::path::Path) -> u8 {
    let files = schedule::installed(root);
    let read: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(p).unwrap_or_default(),
            )
        })
        .collect();
    if c.json {
        let items: Vec<serde_json::Value> = read
            .iter()
            .map(|(p, t)| {
                let commands = if p.ends_with("cron.d/kbz-backup") {
                    schedule::cron_commands(t)
                } else {
                    Vec::new()
                };
                serde_json::json!({ "path": p, "content": t, "commands": commands })
            })
            .collect();
        crate::outln!("{}", serde_json::json!({ "installed": items }));
        return exit::OK;
    }
    if read.is_empty() {
        crate::outln!(
            "no kbz-backup schedule under {}; install one with `kbz-backup schedule install`",
            root.display()
        );
    }
    for (p, t) in read {
        crate::outln!("== {p}");
        crate::out!("{t}");
    }
    exit::OK
}

/// `--full` / `--diff` as a kind (`None`: the component's default).
pub fn kind(full: bool, diff: bool) -> Option<backup::BackupKind> {
    match (full, diff) {
        (true, _) => Some(backup::BackupKind::Full),
        (_, true) => Some(backup::BackupKind::Diff),
        _ => None,
    }
}
