//! Patroni around a restore of etcd ([`kbz_core::backup::RestoreHook`]). Checked on the lab:
//! restoring etcd under a running Patroni demotes the primary while etcd is stopped, and
//! afterwards every Patroni refuses the restored cluster (`Connected to Etcd node with term
//! 2. Old known term 6`, StaleEtcdNode) until it restarts: no primary at all. So:
//! - before: `patronictl pause --wait` (maintenance mode: Patroni neither demotes nor
//!   promotes, and stopping it leaves PostgreSQL running); a cluster the operator paused
//!   stays paused afterwards; when etcd is already down pause cannot be written, which is
//!   noted and the rest still runs.
//! - the restore drops the keys that describe the cluster at backup time
//!   ([`PatroniAroundEtcd::stale_keys`]: leader, sync, status, history, failover, members);
//!   the dynamic configuration and the initialize key (the system id) stay;
//! - after: `patronictl edit-config -s pause=true` (written straight into the restored
//!   etcd, whose configuration predates the pause), `systemctl restart patroni` on every
//!   member (a fresh etcd client: the stale term is forgotten), a wait until the running
//!   primary holds the leader key again (in pause it takes the free key), then
//!   `patronictl resume --wait`.

use async_trait::async_trait;
use kbz_core::backup::{BackupError, HookState, RestoreHook};
use kbz_core::component::HostExec;
use kbz_core::shell::quote;
use kbz_core::{Cmd, Context, Host, Output, Role};
use std::time::{Duration, Instant};

use crate::cluster::{cluster_script, parse_cluster};
use crate::patroni::PATRONICTL_BIN;
use crate::{Postgres, CONFIG_PATH, SERVICE};

const COMPONENT: &str = "postgres";

/// The keys under Patroni's namespace that describe the live cluster, relative to
/// `/service/<scope>/` (`members/`: every member key).
pub const STALE: [&str; 6] = [
    "leader", "sync", "status", "history", "failover", "members/",
];

/// The hook kbz-stack lists for etcd's restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatroniAroundEtcd;

/// `patronictl` with the member's own configuration (REST credentials included, never on
/// the command line).
fn ctl(args: &str) -> String {
    format!("{PATRONICTL_BIN} -c {} {args}", quote(CONFIG_PATH))
}

/// Pauses the cluster and prints `paused`, or `already` when it was paused before; exits
/// 1 with patronictl's words otherwise.
pub fn pause_script() -> String {
    format!(
        "out=$({p} 2>&1) && {{ echo paused; exit 0; }}\ncase \"$out\" in *'already paused'*) echo already; exit 0;; esac\nprintf '%s\\n' \"$out\"; exit 1\n",
        p = ctl("pause --wait")
    )
}

/// Writes `pause: true` straight into the (restored) etcd, whatever it says now.
pub fn repause_script() -> String {
    ctl("edit-config --force -s pause=true")
}

/// Resumes the cluster once every member acknowledged.
pub fn resume_script() -> String {
    ctl("resume --wait")
}

/// Restarts Patroni on a member (in pause PostgreSQL keeps running).
pub fn restart_script() -> String {
    format!("systemctl restart {SERVICE}")
}

/// What an operator does when the restore failed after the pause.
fn if_failed() -> String {
    format!(
        "kbz paused Patroni before the restore and it stays paused: once etcd is healthy, `systemctl restart {SERVICE}` on every postgres host, then `{}`",
        resume_script()
    )
}

fn text(o: &Output) -> String {
    format!("{}{}", o.stdout_str(), o.stderr_str())
        .trim()
        .to_string()
}

async fn run(hx: &HostExec, script: String, secs: u64) -> Result<Output, String> {
    hx.exec
        .run(&Cmd::new(script).timeout(Duration::from_secs(secs)))
        .await
        .map_err(|e| e.to_string())
}

/// The first member on which `script` succeeds, with its output; otherwise every
/// member's failure.
async fn on_any(hosts: &[HostExec], script: &str, secs: u64) -> Result<String, String> {
    let mut failed = Vec::new();
    for hx in hosts {
        match run(hx, script.to_string(), secs).await {
            Ok(o) if o.success() => return Ok(o.stdout_str().trim().to_string()),
            Ok(o) => failed.push(format!("{}: {}", hx.host.hostname, text(&o))),
            Err(e) => failed.push(format!("{}: {e}", hx.host.hostname)),
        }
    }
    Err(failed.join("; "))
}

/// The member that leads according to any member's `GET /cluster`.
async fn leader(hosts: &[HostExec]) -> Option<String> {
    for hx in hosts {
        let Ok(o) = run(hx, cluster_script(&Postgres::rest_url(&hx.host)), 10).await else {
            continue;
        };
        if !o.success() {
            continue;
        }
        if let Ok(rows) = parse_cluster(&o.stdout_str()) {
            if let Some(l) = rows
                .iter()
                .find(|r| r.role == "Leader" && r.state == "running")
            {
                return Some(l.member.clone());
            }
        }
    }
    None
}

#[async_trait]
impl RestoreHook for PatroniAroundEtcd {
    fn component(&self) -> &'static str {
        COMPONENT
    }

    fn around(&self) -> &'static str {
        "etcd"
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Postgres)
    }

    fn steps(&self, ctx: &Context) -> (Vec<String>, Vec<String>) {
        (
            vec![format!(
                "pause Patroni (`{}`): while etcd is down it neither demotes nor promotes",
                ctl("pause --wait")
            )],
            vec![
                format!(
                    "delete Patroni's live-state keys of the backup time from the restored etcd: {}",
                    self.stale_keys(ctx).join(", ")
                ),
                format!("write pause into the restored etcd (`{}`)", repause_script()),
                format!(
                    "restart Patroni on every postgres host (`{}`; PostgreSQL keeps running in pause)",
                    restart_script()
                ),
                "wait until the running primary holds the leader key again".into(),
                format!(
                    "resume Patroni (`{}`) unless it was paused before the restore",
                    resume_script()
                ),
            ],
        )
    }

    fn stale_keys(&self, ctx: &Context) -> Vec<String> {
        let scope = ctx.config.cluster.slug();
        STALE
            .iter()
            .map(|k| format!("/service/{scope}/{k}"))
            .collect()
    }

    async fn before(&self, _ctx: &Context, hosts: &[HostExec]) -> Result<HookState, BackupError> {
        match on_any(hosts, &pause_script(), 120).await {
            Ok(out) if out.ends_with("already") => Ok(HookState {
                undo: false,
                note: Some("Patroni was paused before the restore and stays paused".into()),
                if_failed: None,
            }),
            Ok(_) => Ok(HookState {
                undo: true,
                note: None,
                if_failed: Some(if_failed()),
            }),
            // etcd down already (the usual reason to restore it): Patroni has no primary
            // to protect any more; it is paused in the restored etcd before its restart.
            Err(e) => Ok(HookState {
                undo: true,
                note: Some(format!(
                    "Patroni could not be paused before the restore (etcd down?): {e}"
                )),
                if_failed: None,
            }),
        }
    }

    async fn after(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
        state: &HookState,
    ) -> Result<String, BackupError> {
        let first = hosts
            .first()
            .map(|h| h.host.hostname.clone())
            .unwrap_or_default();
        let fail = |host: &str, what: String| BackupError::restore(COMPONENT, host, what);
        on_any(hosts, &repause_script(), 120)
            .await
            .map_err(|e| fail(&first, format!("pause in the restored etcd: {e}")))?;
        for hx in hosts {
            let o = run(hx, restart_script(), 120)
                .await
                .map_err(|e| fail(&hx.host.hostname, format!("restart Patroni: {e}")))?;
            if !o.success() {
                return Err(fail(
                    &hx.host.hostname,
                    format!("restart Patroni: {}", text(&o)),
                ));
            }
        }
        let secs = ctx.config.timeouts.readiness;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let lead = loop {
            if let Some(l) = leader(hosts).await {
                break l;
            }
            if Instant::now() >= deadline {
                return Err(fail(
                    &first,
                    format!("no member holds Patroni's leader key {secs} s after the restart ([timeouts] readiness); see `patronictl -c {CONFIG_PATH} list`"),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let mut done = format!(
            "Patroni restarted on {} member(s) in pause, {lead} holds the leader key",
            hosts.len()
        );
        if state.undo {
            on_any(hosts, &resume_script(), 120)
                .await
                .map_err(|e| fail(&first, format!("resume Patroni: {e}")))?;
            done.push_str(", resumed");
        } else {
            done.push_str(", left paused as it was");
        }
        if let Some(n) = &state.note {
            done.push_str(&format!(" ({n})"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`pause_script`] with a stand-in patronictl that prints `say` and exits `rc`.
    fn pause_with(say: &str, rc: i32) -> (i32, String) {
        let dir = tempfile::tempdir().expect("tmp");
        let stub = dir.path().join("patronictl");
        std::fs::write(&stub, format!("#!/bin/sh\necho '{say}'\nexit {rc}\n")).expect("stub");
        let script = pause_script().replace(PATRONICTL_BIN, &stub.display().to_string());
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("chmod +x {}; {script}", stub.display())])
            .output()
            .expect("sh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    #[test]
    fn the_pause_script_tells_paused_already_and_failed_apart() {
        assert_eq!(
            pause_with("Success: cluster management is paused", 0),
            (0, "paused".into())
        );
        assert_eq!(
            pause_with("Error: Cluster is already paused", 1),
            (0, "already".into())
        );
        let (rc, out) = pause_with("Error: Can not find accessible cluster member", 1);
        assert_eq!(rc, 1);
        assert!(out.contains("accessible"), "{out}");
    }
}
