//! The run lock: one mutating run per state directory at a time. `run.lock` is created
//! exclusively and names its owner (uid, pid, start time, command); a second run is refused
//! with E066 naming the holder, and a lock whose process is gone is reported as stale with
//! the file to remove. The lock is released when the guard is dropped.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Who holds a run lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Numeric user id of the holder.
    pub uid: u32,
    /// Process id of the holder.
    pub pid: u32,
    /// When it took the lock (UTC, RFC 3339).
    pub started: String,
    /// What it runs (`kbz-install install`).
    pub command: String,
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {}, uid {}, since {})",
            self.command, self.pid, self.uid, self.started
        )
    }
}

/// Run-lock failures (E066).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error("another kbz run holds {path}: {owner}; wait for it to finish (a second run would change the same hosts at the same time)")]
    Held {
        /// The lock file.
        path: String,
        /// Its holder.
        owner: LockOwner,
    },
    /// The holder is gone but its lock file is still there.
    #[error("stale run lock {path}: {owner} is no longer running (killed?); check its journal with `kbz-install rollback`, then remove the lock: `rm {path}`")]
    Stale {
        /// The lock file.
        path: String,
        /// Its former holder.
        owner: LockOwner,
    },
    /// The lock file could not be created or read.
    #[error("run lock {path}: {reason}")]
    Io {
        /// The lock file.
        path: String,
        /// Detail.
        reason: String,
    },
}

impl kbz_errors::HasCode for LockError {
    fn code(&self) -> kbz_errors::Code {
        match self {
            LockError::Held { .. } | LockError::Stale { .. } => kbz_errors::Code::E066,
            LockError::Io { .. } => kbz_errors::Code::E028,
        }
    }
}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `state_dir` for `command`, or says who holds it.
    pub fn acquire(state_dir: &Path, command: &str) -> Result<RunLock, LockError> {
        Self::acquire_file(state_dir, "run.lock", command)
    }

    /// Takes the lock file `name` of `state_dir` (kbz-backup's `backup.lock`), the same way.
    pub fn acquire_file(state_dir: &Path, name: &str, command: &str) -> Result<RunLock, LockError> {
        let path = state_dir.join(name);
        let shown = path.display().to_string();
        let io = |e: std::io::Error| LockError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let owner = LockOwner {
            uid: std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0),
            pid: std::process::id(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.into(),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let text = serde_json::to_string(&owner).unwrap_or_default();
                f.write_all(text.as_bytes()).map_err(io)?;
                Ok(RunLock { path })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                let holder: LockOwner = serde_json::from_str(&text).map_err(|e| LockError::Io {
                    path: shown.clone(),
                    reason: format!("unreadable lock ({e}); remove it if no kbz run is active"),
                })?;
                if Path::new(&format!("/proc/{}", holder.pid)).exists() {
                    Err(LockError::Held {
                        path: shown,
                        owner: holder,
                    })
                } else {
                    Err(LockError::Stale {
                        path: shown,
                        owner: holder,
                    })
                }
            }
            Err(e) => Err(io(e)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_errors::{Code, HasCode};

    #[test]
    fn a_second_holder_is_refused_and_the_lock_is_released_on_drop() {
        let dir = tempfile::tempdir().expect("tmp");
        let lock = RunLock::acquire(dir.path(), "kbz-install install").expect("first");
        let e = RunLock::acquire(dir.path(), "kbz-install uninstall").expect_err("held");
        assert_eq!(e.code(), Code::E066);
        let text = e.to_string();
        assert!(text.contains("kbz-install install"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(lock);
        assert!(!dir.path().join("run.lock").exists());
        RunLock::acquire(dir.path(), "again").expect("free again");
    }

    #[test]
    fn a_lock_whose_process_is_gone_is_named_stale() {
        let dir = tempfile::tempdir().expect("tmp");
        let dead = LockOwner {
            uid: 0,
            pid: u32::MAX - 1,
            started: "2026-01-01T00:00:00Z".into(),
            command: "kbz-install install".into(),
        };
        std::fs::write(
            dir.path().join("run.lock"),
            serde_json::to_string(&dead).expect("json"),
        )
        .expect("write");
        let e = RunLock::acquire(dir.path(), "x").expect_err("stale");
        assert_eq!(e.code(), Code::E066);
        let text = e.to_string();
        assert!(text.starts_with("stale run lock"), "{text}");
        assert!(text.contains(&format!("pid {}", u32::MAX - 1)), "{text}");
        assert!(text.contains("rm "), "{text}");
    }
}
