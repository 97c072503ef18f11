//! `LocalExecutor`: runs commands on this machine with `sh -c` (for `localhost` and tests).
//!
//! Each command runs in its own process group so that a timeout stops the whole tree the
//! script started, not only the shell.

use async_trait::async_trait;
use kbz_core::{Cmd, ExecError, Executor, Output};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use crate::invoke::{describe, finish, invocation};

/// The default per-command timeout, as in `[timeouts] command`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs commands locally as the current user.
#[derive(Debug)]
pub struct LocalExecutor {
    name: String,
    timeout: Duration,
    round_trips: AtomicU64,
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalExecutor {
    /// An executor named `localhost` with the default command timeout.
    pub fn new() -> Self {
        Self::named("localhost")
    }

    /// An executor reporting itself as `name` in messages.
    pub fn named(name: &str) -> Self {
        LocalExecutor {
            name: name.to_string(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            round_trips: AtomicU64::new(0),
        }
    }

    /// Sets the timeout used when a command has none of its own.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn session_err(&self, reason: String) -> ExecError {
        ExecError::Session {
            host: self.name.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let timeout = cmd.timeout.unwrap_or(self.timeout);
        let inv = invocation(cmd);
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&inv.script)
            .stdin(if inv.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| self.session_err(format!("cannot start sh: {e}")))?;
        let pid = child.id();
        let writer = match (child.stdin.take(), inv.stdin) {
            (Some(mut pipe), Some(data)) => Some(tokio::spawn(async move {
                // A script that exits without reading its input closes the pipe: not an error.
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            })),
            _ => None,
        };
        let waited = tokio::time::timeout(timeout, child.wait_with_output()).await;
        if let Some(w) = writer {
            w.abort();
        }
        match waited {
            Ok(Ok(out)) => finish(
                &self.name,
                cmd,
                Output {
                    status: out.status.code().unwrap_or(-1),
                    stdout: out.stdout,
                    stderr: out.stderr,
                },
            ),
            Ok(Err(e)) => Err(self.session_err(format!("waiting for sh failed: {e}"))),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid).await;
                }
                Err(ExecError::Timeout {
                    host: self.name.clone(),
                    secs: timeout.as_secs(),
                    what: describe(cmd),
                })
            }
        }
    }

    fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// Kills the process group our child leads (its id is the group id, see `process_group(0)`).
async fn kill_group(pgid: u32) {
    let _ = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL -{pgid} 2>/dev/null"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn runs_with_stdin_env_and_status() {
        let ex = LocalExecutor::new();
        let out = ex
            .run(
                &Cmd::new("cat; printf '[%s]' \"$GREETING\"; echo oops >&2; exit 7")
                    .stdin("in:")
                    .env("GREETING", "it's me"),
            )
            .await
            .expect("run");
        assert_eq!(out.status, 7);
        assert_eq!(out.stdout_str(), "in:[it's me]");
        assert_eq!(out.stderr_str(), "oops\n");
        assert_eq!(ex.round_trips(), 1);
    }

    #[tokio::test]
    async fn without_stdin_the_script_reads_eof() {
        let out = LocalExecutor::new()
            .run(&Cmd::new("wc -c"))
            .await
            .expect("run");
        assert_eq!(out.stdout_str().trim(), "0");
    }

    #[tokio::test]
    async fn timeout_stops_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("late");
        let ex = LocalExecutor::named("here").with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = ex
            .run(&Cmd::new(format!(
                "(sleep 2; touch '{}') & sleep 30",
                marker.display()
            )))
            .await
            .expect_err("must time out");
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(
            matches!(err, ExecError::Timeout { ref host, .. } if host == "here"),
            "{err}"
        );
        assert_eq!(kbz_errors::HasCode::code(&err), kbz_errors::Code::E016);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "the background child survived the timeout"
        );
    }

    #[tokio::test]
    async fn scripts_longer_than_an_argument_allows_still_run() {
        let padding = ": padding line that makes the script long\n".repeat(5000);
        let script = format!("{padding}read line; echo \"got $line\"");
        assert!(script.len() > 128 * 1024);
        let out = LocalExecutor::new()
            .run(&Cmd::new(script).stdin("input\n"))
            .await
            .expect("run");
        assert_eq!(out.stdout_str(), "got input\n", "{}", out.stderr_str());
    }
}
