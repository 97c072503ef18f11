//! The run journal: every applied change's undo steps, written ahead of the change and
//! persisted (mode 0600: old file contents may be sensitive) so a failed run can be rolled
//! back now or later by `kbz-install rollback`.

use fs_err as fs;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::resource::Op;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// In progress (a crash leaves this; `rollback` accepts it).
    Running,
    /// Finished without error.
    Succeeded,
    /// Failed and not rolled back (`--skip-cleanup`, or a crash).
    Failed,
    /// Failed and rolled back completely.
    RolledBack,
    /// Failed and some undo steps failed too.
    RollbackIncomplete,
}

/// One applied change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Inventory hostname.
    pub host: String,
    /// Component.
    pub component: String,
    /// What was done (`write /etc/hosts ...`).
    pub did: String,
    /// Steps that undo it.
    pub undo: Vec<Op>,
}

/// The journal of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Run identifier (start time).
    pub run_id: String,
    /// Status.
    pub status: RunStatus,
    /// Applied changes, in order.
    pub entries: Vec<JournalEntry>,
    /// What cluster steps did (REPLICAOF, SENTINEL MONITOR, ...): kbz cannot undo these, so a
    /// rollback names them instead of claiming the hosts are as they were.
    #[serde(default)]
    pub cluster: Vec<String>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

/// Journal persistence failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing the file failed.
    #[error(
        "journal {path}: {reason}. Check that the state directory is writable (ls -ld {dir})."
    )]
    Io {
        /// File.
        path: String,
        /// Directory.
        dir: String,
        /// Detail.
        reason: String,
    },
    /// Nothing to replay.
    #[error(
        "no failed run to roll back in {0} (the last run succeeded or was already rolled back)"
    )]
    NothingToRollBack(String),
    /// The last run left changes that were never rolled back; a new run would bury them.
    #[error(
        "the last run ({run_id}) left {entries} change(s) in {path} that were never rolled back \
         (it failed with --skip-cleanup, or the controller was killed): undo them first with \
         `kbz-install rollback --inventory servers.tsv`, or, if you repaired the hosts by hand, \
         set the journal aside with `mv {path} {path}.{run_id}` and run again"
    )]
    PendingRollback {
        /// The journal file.
        path: String,
        /// The run that left it.
        run_id: String,
        /// Changes recorded.
        entries: usize,
    },
}

impl kbz_errors::HasCode for JournalError {
    fn code(&self) -> kbz_errors::Code {
        match self {
            JournalError::Io { .. } => kbz_errors::Code::E028,
            JournalError::NothingToRollBack(_) => kbz_errors::Code::E010,
            JournalError::PendingRollback { .. } => kbz_errors::Code::E028,
        }
    }
}

impl Journal {
    /// A new journal, persisted under `state_dir/journal.json` when a dir is given.
    pub fn new(run_id: String, state_dir: Option<&Path>) -> Self {
        Journal {
            run_id,
            status: RunStatus::Running,
            entries: Vec::new(),
            cluster: Vec::new(),
            path: state_dir.map(|d| d.join("journal.json")),
        }
    }

    /// Loads the last run's journal from a state dir.
    pub fn load(state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join("journal.json");
        let err = |reason: String| JournalError::Io {
            path: path.display().to_string(),
            dir: state_dir.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(JournalError::NothingToRollBack(
                state_dir.display().to_string(),
            ));
        }
        let text = fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let mut j: Journal = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        j.path = Some(path);
        Ok(j)
    }

    /// Appends an entry and persists.
    pub fn record(&mut self, entry: JournalEntry) -> Result<(), JournalError> {
        self.entries.push(entry);
        self.save()
    }

    /// Sets the status and persists. A run that ended cleanly (succeeded, or rolled back
    /// completely) has nothing left to undo: its undo steps, which hold the previous bytes
    /// of every file written (old secrets among them), are dropped and only the list of
    /// what was done stays.
    pub fn set_status(&mut self, status: RunStatus) -> Result<(), JournalError> {
        self.status = status;
        if matches!(status, RunStatus::Succeeded | RunStatus::RolledBack) {
            for e in &mut self.entries {
                e.undo.clear();
            }
        }
        self.save()
    }

    /// Records what a cluster step did and persists.
    pub fn record_cluster(&mut self, change: String) -> Result<(), JournalError> {
        self.cluster.push(change);
        self.save()
    }

    /// Refuses to start a new run over a journal that still needs a rollback (a corrupt
    /// journal is refused too: its undo steps could not be read).
    pub fn check_no_pending(state_dir: &Path) -> Result<(), JournalError> {
        match Journal::load(state_dir) {
            Ok(j) if j.needs_rollback() => Err(JournalError::PendingRollback {
                path: state_dir.join("journal.json").display().to_string(),
                run_id: j.run_id,
                entries: j.entries.len(),
            }),
            Ok(_) | Err(JournalError::NothingToRollBack(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keeps only the entries of `hosts` (after a rollback that reached the others).
    pub fn retain_hosts(&mut self, hosts: &[String]) -> Result<(), JournalError> {
        self.entries.retain(|e| hosts.contains(&e.host));
        self.save()
    }

    /// Whether `rollback` has anything to do.
    pub fn needs_rollback(&self) -> bool {
        matches!(
            self.status,
            RunStatus::Running | RunStatus::Failed | RunStatus::RollbackIncomplete
        ) && !self.entries.is_empty()
    }

    /// Undo steps per host in the order they must run: entries in reverse, each entry's
    /// steps in order, and service restarts last (so they load the restored files).
    pub fn undo_plan(&self) -> Vec<(String, Vec<Op>)> {
        let mut hosts: Vec<String> = Vec::new();
        for e in &self.entries {
            if !hosts.contains(&e.host) {
                hosts.push(e.host.clone());
            }
        }
        hosts
            .into_iter()
            .map(|h| {
                let mut ops = Vec::new();
                let mut restarts = Vec::new();
                for e in self.entries.iter().rev().filter(|e| e.host == h) {
                    for op in &e.undo {
                        match op {
                            Op::RestartService { .. } => {
                                if !restarts.contains(op) {
                                    restarts.push(op.clone())
                                }
                            }
                            _ => ops.push(op.clone()),
                        }
                    }
                }
                ops.extend(restarts);
                (h, ops)
            })
            .collect()
    }

    fn save(&self) -> Result<(), JournalError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let err = |reason: String| JournalError::Io {
            path: path.display().to_string(),
            dir: dir.display().to_string(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        crate::secret::write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_runs_in_reverse_with_restarts_last() {
        let mut j = Journal::new("r".into(), None);
        let e = |did: &str, undo: Vec<Op>| JournalEntry {
            host: "h".into(),
            component: "c".into(),
            did: did.into(),
            undo,
        };
        j.record(e("write", vec![Op::RemoveFile { path: "/a".into() }]))
            .expect("record");
        j.record(e("restart", vec![Op::RestartService { name: "s".into() }]))
            .expect("record");
        j.record(e("write2", vec![Op::RemoveFile { path: "/b".into() }]))
            .expect("record");
        let plan = j.undo_plan();
        assert_eq!(
            plan[0].1,
            vec![
                Op::RemoveFile { path: "/b".into() },
                Op::RemoveFile { path: "/a".into() },
                Op::RestartService { name: "s".into() }
            ]
        );
    }

    #[test]
    fn persisted_journal_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = Journal::new("r1".into(), Some(dir.path()));
        j.record(JournalEntry {
            host: "h".into(),
            component: "c".into(),
            did: "x".into(),
            undo: vec![Op::SwapOn],
        })
        .expect("record");
        j.set_status(RunStatus::Failed).expect("status");
        let mode = std::fs::metadata(dir.path().join("journal.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Journal::load(dir.path()).expect("load");
        assert!(back.needs_rollback());
        assert_eq!(back.entries.len(), 1);
    }

    #[test]
    fn a_clean_end_drops_old_contents() {
        let dir = tempfile::tempdir().expect("tmp");
        for end in [RunStatus::Succeeded, RunStatus::RolledBack] {
            let mut j = Journal::new("r1".into(), Some(dir.path()));
            j.record(JournalEntry {
                host: "h".into(),
                component: "c".into(),
                did: "write /etc/x".into(),
                undo: vec![Op::WriteFile {
                    path: "/etc/x".into(),
                    content: b"old-secret-bytes".to_vec(),
                    mode: 0o600,
                    owner: "root:root".into(),
                }],
            })
            .expect("record");
            let text = std::fs::read_to_string(dir.path().join("journal.json")).expect("read");
            assert!(text.contains("old-secret-bytes"));
            j.set_status(end).expect("status");
            let text = std::fs::read_to_string(dir.path().join("journal.json")).expect("read");
            assert!(!text.contains("old-secret-bytes"), "{text}");
            assert!(text.contains("write /etc/x"), "{text}");
            assert!(!Journal::load(dir.path()).expect("load").needs_rollback());
        }
    }
}
