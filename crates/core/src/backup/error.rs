//! `BackupError`: every way a backup, restore, verification, prune or drill fails, each
//! with its E-code (E041-E050) and the host or artifact it is about.

use kbz_errors::{Code, HasCode};

use crate::error::ExecError;

/// Backup, restore, verify, prune and drill failures.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The inventory names no `backup`-role host to keep the repository on (E041).
    #[error("no host has the `backup` role, so there is no repository to keep backups in; add `backup` to the roles of one host in the inventory (it may share a host with other roles)")]
    NoBackupHost,
    /// The repository host could not be reached or its directory not used (E041).
    #[error("the backup repository {dir} on {host} cannot be used: {reason}")]
    Unreachable {
        /// The backup host.
        host: String,
        /// The repository directory.
        dir: String,
        /// What failed.
        reason: String,
    },
    /// Taking a backup failed; nothing was recorded (E042).
    #[error("backup of {component} on {host} failed: {reason}")]
    Failed {
        /// Component.
        component: String,
        /// Host the backup was taken on (or stored to).
        host: String,
        /// What failed.
        reason: String,
    },
    /// A restore failed part-way (E043).
    #[error("restore of {component} on {host} failed: {reason}")]
    Restore {
        /// Component.
        component: String,
        /// Host that failed.
        host: String,
        /// What failed, and the state it left.
        reason: String,
    },
    /// A restore would stop a running, healthy cluster and `--force` was not given (E043).
    #[error("{component} is running and healthy; a restore would stop {stops} and replace its data. Nothing was stopped. Run it again with --force to restore anyway (--dry-run prints every step)")]
    Refused {
        /// Component.
        component: String,
        /// What would be stopped, `service on host` joined with commas.
        stops: String,
    },
    /// An artifact does not match its manifest (E044).
    #[error("backup {id} failed verification: {path} {reason}")]
    Verify {
        /// The backup's id.
        id: String,
        /// The artifact (repository path).
        path: String,
        /// How it differs.
        reason: String,
    },
    /// No backup matches (E045).
    #[error("no backup of {component} {what}")]
    NotFound {
        /// Component (or `any component`).
        component: String,
        /// What was asked for (`at 2026-12-01T10:00:00Z: the first is from ...`).
        what: String,
    },
    /// Deleting old backups failed; newer ones were not touched (E046).
    #[error("pruning {id} on {host} failed: {reason}")]
    Prune {
        /// The backup being removed.
        id: String,
        /// The backup host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// A drill's restored data differs from the manifest (E047).
    #[error("drill of {component} backup {id}: {what} is {got} in the restored copy, the manifest recorded {expected}")]
    DrillMismatch {
        /// Component.
        component: String,
        /// The backup's id.
        id: String,
        /// What was compared (`key count`, `canary key kbz:canary`).
        what: String,
        /// The manifest's value.
        expected: String,
        /// The scratch instance's value.
        got: String,
    },
    /// A drill could not run (E047 too: the backup was not proven).
    #[error("drill of {component} on {host} failed: {reason}")]
    Drill {
        /// Component.
        component: String,
        /// Host the scratch instance ran on.
        host: String,
        /// What failed.
        reason: String,
    },
    /// No room for the backup (E048).
    #[error("no room for the backup on {host}: {reason}")]
    StorageFull {
        /// The host whose disk is full.
        host: String,
        /// Space needed and free.
        reason: String,
    },
    /// Another backup, restore, drill or prune holds the backup lock (E049).
    #[error("{0}")]
    Locked(String),
    /// WAL archiving to the repository is broken (E050; PostgreSQL).
    #[error("WAL archiving on {host} is broken: {reason}")]
    Archive {
        /// The PostgreSQL host.
        host: String,
        /// The archiver's state.
        reason: String,
    },
    /// A transport failure reaching a host (its own code: unreachable, timeout, ...).
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl HasCode for BackupError {
    fn code(&self) -> Code {
        match self {
            BackupError::NoBackupHost | BackupError::Unreachable { .. } => Code::E041,
            BackupError::Failed { .. } => Code::E042,
            BackupError::Restore { .. } | BackupError::Refused { .. } => Code::E043,
            BackupError::Verify { .. } => Code::E044,
            BackupError::NotFound { .. } => Code::E045,
            BackupError::Prune { .. } => Code::E046,
            BackupError::DrillMismatch { .. } | BackupError::Drill { .. } => Code::E047,
            BackupError::StorageFull { .. } => Code::E048,
            BackupError::Locked(_) => Code::E049,
            BackupError::Archive { .. } => Code::E050,
            BackupError::Exec(e) => e.code(),
        }
    }
}

impl BackupError {
    /// The host the failure is about, when it names one.
    pub fn host(&self) -> Option<&str> {
        match self {
            BackupError::Unreachable { host, .. }
            | BackupError::Failed { host, .. }
            | BackupError::Restore { host, .. }
            | BackupError::Prune { host, .. }
            | BackupError::Drill { host, .. }
            | BackupError::StorageFull { host, .. }
            | BackupError::Archive { host, .. } => Some(host),
            _ => None,
        }
    }

    /// The diagnostic: code, message and host.
    pub fn diagnostic(&self) -> kbz_errors::Diagnostic {
        let d = self.to_diagnostic();
        match self.host() {
            Some(h) => d.on_host(h),
            None => d,
        }
    }

    /// A backup failure of `component` on `host`.
    pub fn failed(component: &str, host: &str, reason: impl Into<String>) -> Self {
        BackupError::Failed {
            component: component.into(),
            host: host.into(),
            reason: reason.into(),
        }
    }

    /// A restore failure of `component` on `host`.
    pub fn restore(component: &str, host: &str, reason: impl Into<String>) -> Self {
        BackupError::Restore {
            component: component.into(),
            host: host.into(),
            reason: reason.into(),
        }
    }

    /// A drill failure of `component` on `host`.
    pub fn drill(component: &str, host: &str, reason: impl Into<String>) -> Self {
        BackupError::Drill {
            component: component.into(),
            host: host.into(),
            reason: reason.into(),
        }
    }
}
