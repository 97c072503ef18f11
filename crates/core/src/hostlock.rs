//! The per-host lock: every host a mutating run changes carries `/run/kbz/host.lock` naming
//! the run (controller, machine id, uid, pid, start time, command) for as long as the run
//! lasts, so two controllers (or two state directories on one controller) never change the
//! same host at once. A second run is refused with E067 naming each host and its holder; a
//! lock left by a run of this controller whose process is gone is named stale, with the
//! command that removes it. The controller's own lock is [`crate::runlock`].

use kbz_errors::{Code, Diagnostic, HasCode};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use crate::executor::{ExecError, Executor};

/// Who holds a host lock (one JSON line in the lock file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLockOwner {
    /// The controller's hostname.
    pub controller: String,
    /// The controller's `/etc/machine-id` (how a lock of this controller is recognized).
    pub machine: String,
    /// Numeric user id of the holder on the controller.
    pub uid: u32,
    /// Process id of the holder on the controller.
    pub pid: u32,
    /// When it took the lock (UTC, RFC 3339).
    pub started: String,
    /// What it runs (`kbz-install install`).
    pub command: String,
}

impl HostLockOwner {
    /// This process, running `command`.
    pub fn current(command: &str) -> Self {
        HostLockOwner {
            controller: controller_name(),
            machine: machine_id(),
            uid: std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0),
            pid: std::process::id(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.into(),
        }
    }

    /// The line written to the lock file.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when the holder ran on this controller and its process is gone.
    pub fn is_stale_here(&self) -> bool {
        self.machine == machine_id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl std::fmt::Display for HostLockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` from controller {} (pid {}, uid {}, since {})",
            self.command, self.controller, self.pid, self.uid, self.started
        )
    }
}

fn controller_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(controller_name)
}

/// Why one host's lock was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostLockError {
    /// Another run holds the host.
    #[error("{host}: another kbz run holds {path}: {owner}; wait for it to finish (if no such run is active on {}, the lock is stale: remove it with `ssh {host} sudo rm {path}`)", .owner.controller)]
    Held {
        /// Inventory hostname.
        host: String,
        /// The lock file on the host.
        path: String,
        /// Its holder.
        owner: HostLockOwner,
    },
    /// A run of this controller left its lock and is gone.
    #[error("{host}: stale host lock {path}: {owner} is no longer running (killed?); check its journal with `kbz-install rollback`, then remove the lock: `ssh {host} sudo rm {path}`")]
    Stale {
        /// Inventory hostname.
        host: String,
        /// The lock file on the host.
        path: String,
        /// Its former holder.
        owner: HostLockOwner,
    },
    /// The lock file holds something kbz did not write.
    #[error("{host}: {path} exists but does not name a kbz run ({text:?}); if no kbz run is active, remove it: `ssh {host} sudo rm {path}`")]
    Unreadable {
        /// Inventory hostname.
        host: String,
        /// The lock file on the host.
        path: String,
        /// What it holds.
        text: String,
    },
    /// The lock could not be asked for.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl HostLockError {
    /// The inventory hostname.
    pub fn host(&self) -> Option<&str> {
        match self {
            HostLockError::Held { host, .. }
            | HostLockError::Stale { host, .. }
            | HostLockError::Unreadable { host, .. } => Some(host),
            HostLockError::Exec(_) => None,
        }
    }
}

impl HasCode for HostLockError {
    fn code(&self) -> Code {
        match self {
            HostLockError::Held { .. }
            | HostLockError::Stale { .. }
            | HostLockError::Unreadable { .. } => Code::E067,
            HostLockError::Exec(e) => e.code(),
        }
    }
}

/// The locks of a run were refused on some hosts (every host that refused is listed; the
/// locks taken on the others were released again).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} host(s) are locked by another run, nothing was changed: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct HostLocksRefused(pub Vec<HostLockError>);

impl HasCode for HostLocksRefused {
    fn code(&self) -> Code {
        self.0
            .iter()
            .find(|e| e.code() == Code::E067)
            .or(self.0.first())
            .map(|e| e.code())
            .unwrap_or(Code::E067)
    }
}

impl HostLocksRefused {
    /// The diagnostic, on the first refusing host.
    pub fn diagnostic(&self) -> Diagnostic {
        let mut d = Diagnostic::new(self.code(), self.to_string());
        if let Some(h) = self.0.iter().find_map(|e| e.host()) {
            d = d.on_host(h);
        }
        d
    }
}

/// The host locks a run holds; [`HostLocks::release`] gives them back.
#[derive(Debug)]
pub struct HostLocks {
    path: String,
    line: String,
    held: Vec<Arc<dyn Executor>>,
    taken_over: Vec<(String, HostLockOwner)>,
}

impl HostLocks {
    /// Takes the lock at `path` on every executor's host at once, for `command`. When any
    /// host refuses, the locks taken are released and every refusal is returned.
    pub async fn acquire(
        execs: impl IntoIterator<Item = Arc<dyn Executor>>,
        path: &str,
        command: &str,
    ) -> Result<HostLocks, HostLocksRefused> {
        Self::acquire_with(execs, path, command, false).await
    }

    /// As [`HostLocks::acquire`]; with `take_over_stale` (for `rollback`, the remedy of a
    /// killed run) a stale lock of this controller is replaced by this run's and named in
    /// [`HostLocks::taken_over`].
    pub async fn acquire_with(
        execs: impl IntoIterator<Item = Arc<dyn Executor>>,
        path: &str,
        command: &str,
        take_over_stale: bool,
    ) -> Result<HostLocks, HostLocksRefused> {
        let line = HostLockOwner::current(command).line();
        let mut set = tokio::task::JoinSet::new();
        for e in execs {
            let (path, line) = (path.to_string(), line.clone());
            set.spawn(async move {
                let mut r = e.lock_host(&path, &line).await;
                let mut stale = None;
                if let Ok(Some(text)) = &r {
                    let owner = serde_json::from_str::<HostLockOwner>(text).ok();
                    if let Some(owner) = owner.filter(|o| take_over_stale && o.is_stale_here()) {
                        r = match e.unlock_host(&path, text).await {
                            Ok(()) => e.lock_host(&path, &line).await,
                            Err(x) => Err(x),
                        };
                        stale = Some(owner);
                    }
                }
                (e, r, stale)
            });
        }
        let mut held = Vec::new();
        let mut refused = Vec::new();
        let mut taken_over = Vec::new();
        while let Some(j) = set.join_next().await {
            let Ok((e, r, stale)) = j else { continue };
            let host = e.name().to_string();
            if let (Ok(None), Some(owner)) = (&r, stale) {
                tracing::warn!(host = %host, holder = %owner, "took over a stale host lock");
                taken_over.push((host.clone(), owner));
            }
            match r {
                Ok(None) => held.push(e),
                Ok(Some(text)) => {
                    refused.push(match serde_json::from_str::<HostLockOwner>(&text) {
                        Ok(owner) if owner.is_stale_here() => HostLockError::Stale {
                            host,
                            path: path.into(),
                            owner,
                        },
                        Ok(owner) => HostLockError::Held {
                            host,
                            path: path.into(),
                            owner,
                        },
                        Err(_) => HostLockError::Unreadable {
                            host,
                            path: path.into(),
                            text,
                        },
                    })
                }
                Err(e) => refused.push(HostLockError::Exec(e)),
            }
        }
        taken_over.sort_by(|a, b| a.0.cmp(&b.0));
        let locks = HostLocks {
            path: path.into(),
            line,
            held,
            taken_over,
        };
        if refused.is_empty() {
            return Ok(locks);
        }
        locks.release().await;
        refused.sort_by(|a, b| a.host().cmp(&b.host()));
        Err(HostLocksRefused(refused))
    }

    /// The stale locks this run replaced: host and the former holder.
    pub fn taken_over(&self) -> &[(String, HostLockOwner)] {
        &self.taken_over
    }

    /// The hosts whose lock is held, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.held.iter().map(|e| e.name().to_string()).collect();
        v.sort();
        v
    }

    /// Releases every lock; a host that cannot be reached keeps its lock (named stale by
    /// the next run) and is returned with the error.
    pub async fn release(self) -> Vec<(String, ExecError)> {
        let mut set = tokio::task::JoinSet::new();
        for e in self.held {
            let (path, line) = (self.path.clone(), self.line.clone());
            set.spawn(async move {
                let r = e.unlock_host(&path, &line).await;
                (e.name().to_string(), r)
            });
        }
        let mut failed = Vec::new();
        while let Some(j) = set.join_next().await {
            if let Ok((h, Err(e))) = j {
                tracing::warn!(host = %h, error = %e, "host lock not released");
                failed.push((h, e));
            }
        }
        failed
    }
}
