//! `kbz-backup restore COMPONENT [--at TIME | --id ID] [--force] [--dry-run]`: the backup is
//! chosen first (E045 before anything stops: none, an unknown id, a time before the first),
//! the component says what it would stop and do; `--dry-run` prints that and stops; a
//! running, healthy cluster is refused without `--force` (E043 naming what would stop);
//! otherwise the artifact is read back, checked and decrypted (E044), the host locks of the
//! component's hosts are taken (E067), the component restores, and kbz-health's checks of
//! [`Backup::healthy_after`] must pass within `[timeouts] readiness`.

use chrono::{DateTime, Utc};
use kbz_core::backup::{self, Backup, BackupEnv, BackupError, RestoreHook, Target};
use kbz_core::Level;
use kbz_errors::{Code, Diagnostic};
use kbz_notify::Event;
use std::time::{Duration, Instant};

use super::{failure, output, prepare, Prepared};
use crate::{exit, Common, Failure};

/// `restore` options.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The component.
    pub component: String,
    /// `--at TIME` (RFC 3339, UTC when no offset is given).
    pub at: Option<String>,
    /// `--id ID`.
    pub id: Option<String>,
    /// Restore even onto a running, healthy cluster.
    pub force: bool,
    /// Print every step, change nothing.
    pub dry_run: bool,
}

/// Parses `--at`: RFC 3339 (`2026-12-02T19:30:00Z`), or without an offset as UTC
/// (`2026-12-02T19:30:00`, `2026-12-02 19:30:00`).
pub fn parse_at(s: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim(), f) {
            return Ok(t.and_utc());
        }
    }
    Err(Failure::input(vec![Diagnostic::new(
        Code::E010,
        format!("--at `{s}` is not a time"),
    )
    .hint(
        "write it as RFC 3339, e.g. `--at 2026-12-02T19:30:00Z` (UTC without an offset)",
    )]))
}

/// `kbz-backup restore`.
pub fn restore(c: &Common, o: &RestoreOptions) -> u8 {
    match run(c, o) {
        Ok(code) => code,
        Err(f) => f.report(c.json),
    }
}

fn run(c: &Common, o: &RestoreOptions) -> Result<u8, Failure> {
    let at = o.at.as_deref().map(parse_at).transpose()?;
    if at.is_some() && o.id.is_some() {
        return Err(Failure::input(vec![Diagnostic::new(
            Code::E010,
            "--at and --id both name the backup to restore; give one",
        )]));
    }
    let p = prepare(c, "restore")?;
    let b = p
        .select(Some(&o.component))?
        .into_iter()
        .next()
        .ok_or_else(|| Failure::input(vec![Diagnostic::new(Code::E010, "no component")]))?;
    let all = p.list().map_err(|e| failure(&e))?;
    let target = match (&o.id, at) {
        (Some(id), _) => Target::Id(id.clone()),
        (None, Some(t)) => Target::At(t),
        (None, None) => Target::Latest,
    };
    let m = backup::manifest::select(&all, b.component(), &target)
        .map_err(|e| failure(&e))?
        .clone();
    let hosts = p.hosts_of(b.as_ref()).map_err(|e| failure(&e))?;
    let env = BackupEnv {
        ctx: &p.session.ctx,
        hosts: &hosts,
        backup_host: &p.backup_host,
        repo: &p.repo,
    };
    // The components whose live state sits in this one's store (Patroni in etcd), with
    // their hosts: held still around the restore.
    let hooks: Vec<_> = kbz_stack::restore_hooks()
        .into_iter()
        .filter(|h| h.around() == b.component())
        .filter(|h| {
            p.session
                .ctx
                .inventory
                .hosts
                .iter()
                .any(|x| h.applies_to(x))
        })
        .collect();
    let mut plan =
        p.rt.block_on(b.restore_plan(&env, &m, at))
            .map_err(|e| failure(&e))?;
    for h in hooks.iter().rev() {
        let (before, after) = h.steps(&p.session.ctx);
        // After the read of the artifact (the first step), before anything stops.
        let at = plan.steps.len().min(1);
        plan.steps.splice(at..at, before);
        let last = plan.steps.len().saturating_sub(1);
        plan.steps.splice(last..last, after);
    }
    if o.dry_run {
        output::print_restore_plan(&m, &plan, c.json);
        return Ok(exit::OK);
    }
    if plan.running && !o.force {
        let stops = plan
            .stops
            .iter()
            .map(|(h, s)| format!("{s} on {h}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(failure(&BackupError::Refused {
            component: b.component().into(),
            stops,
        }));
    }
    let started = Instant::now();
    let bytes = match m.stored {
        Some(_) => {
            let stored = p.rt.block_on(p.repo.fetch(&m)).map_err(|e| failure(&e))?;
            Some(backup::unseal(&m, stored, p.key.as_ref()).map_err(|e| failure(&e))?)
        }
        None => None,
    };
    let execs = hosts.iter().map(|h| h.exec.clone()).collect();
    let _locks = crate::lock::controller_and_hosts(
        &p.rt,
        p.session.inputs.state_dir.as_deref(),
        "kbz-backup restore",
        execs,
        kbz_core::shell::HOST_LOCK_PATH,
    )?;
    let result = around_hooks(&p, b.as_ref(), &env, &hooks, || {
        p.rt.block_on(b.restore(&env, &m, bytes.as_deref(), at))
    })
    .and_then(|r| wait_healthy(&p, b.as_ref(), &hosts[0].host.hostname).map(|_| r));
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(r) => {
            tracing::info!(event = "restore", component = b.component(), id = %m.id, ms, ok = true, detail = %r.detail, "restored");
            p.notify(&Event::new(
                Level::Info,
                format!("Restore of {} on {} succeeded", b.component(), p.cluster()),
                format!("Backup {} restored in {} ms: {}.", m.id, ms, r.detail),
            ));
            output::print_restored(&m, &r, ms, c.json);
            Ok(exit::OK)
        }
        Err(e) => {
            let d = e.diagnostic();
            tracing::error!(event = "restore", component = b.component(), id = %m.id, ms, ok = false, code = %d.code, error = %d.message, "restore failed");
            p.notify(&Event::new(
                Level::Critical,
                format!(
                    "Restore of {} on {} failed: {}",
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
            Err(failure(&e))
        }
    }
}

/// Runs `restore` between the hooks' `before` and `after`, with the stale keys they name
/// dropped from the restored store in between; the hooks' words join the restore's detail.
fn around_hooks(
    p: &Prepared,
    b: &dyn Backup,
    env: &BackupEnv<'_>,
    hooks: &[std::sync::Arc<dyn RestoreHook>],
    restore: impl FnOnce() -> Result<backup::Restored, BackupError>,
) -> Result<backup::Restored, BackupError> {
    let ctx = &p.session.ctx;
    let mut held = Vec::new();
    for h in hooks {
        let hosts = p.hosts_where(|x| h.applies_to(x))?;
        let state = p.rt.block_on(h.before(ctx, &hosts))?;
        if let Some(n) = &state.note {
            crate::errln!("warning: {n}");
        }
        held.push((h, hosts, state));
    }
    let mut r = restore().map_err(|e| {
        let left: Vec<&str> = held
            .iter()
            .filter_map(|(_, _, s)| s.if_failed.as_deref())
            .collect();
        if left.is_empty() {
            return e;
        }
        match e {
            BackupError::Restore {
                component,
                host,
                reason,
            } => BackupError::Restore {
                component,
                host,
                reason: format!("{reason}; {}", left.join("; ")),
            },
            other => other,
        }
    })?;
    for (h, hosts, state) in &held {
        let n = p.rt.block_on(b.drop_keys(env, &h.stale_keys(ctx)))?;
        r.detail
            .push_str(&format!("; {n} stale {} key(s) dropped", h.component()));
        let done = p.rt.block_on(h.after(ctx, hosts, state))?;
        r.detail.push_str(&format!("; {done}"));
    }
    Ok(r)
}

/// Waits until kbz-health's checks of the components `b` names pass (E043 after
/// `[timeouts] readiness` seconds, naming what still fails).
fn wait_healthy(p: &Prepared, b: &dyn Backup, host: &str) -> Result<(), BackupError> {
    let names = b.healthy_after();
    let components: Vec<_> = kbz_stack::components()
        .into_iter()
        .filter(|c| names.contains(&c.name()))
        .collect();
    let secs = p.session.ctx.config.timeouts.readiness;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let report = p.rt.block_on(crate::health::check(
            &p.session.ctx,
            &components,
            p.connector.as_ref(),
        ));
        if report.status == kbz_core::health::HealthStatus::Ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let failing = report
                .failing()
                .map(|c| format!("{} {}: {}", c.component, c.check, c.detail))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BackupError::restore(
                b.component(),
                host,
                format!(
                    "restored, but {} is not healthy after {secs} s: {failing}",
                    names.join(" and ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc() {
        let t = parse_at("2026-12-02T19:30:00Z").expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2026-12-02T19:30:00+00:00");
        assert_eq!(parse_at("2026-12-02 19:30:00").expect("naive"), t);
        assert_eq!(parse_at("2026-12-02T20:30:00+01:00").expect("offset"), t);
        let e = parse_at("yesterday").expect_err("bad");
        assert_eq!(e.exit, exit::INPUT);
    }
}
