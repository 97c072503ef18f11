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
    max_output: usize,
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
            max_output: crate::ssh::DEFAULT_MAX_OUTPUT,
            round_trips: AtomicU64::new(0),
        }
    }

    /// Sets the timeout used when a command has none of its own.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cap on one command's captured stdout and stderr (E068 past it).
    pub fn with_max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
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
        let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
        let limit = self.max_output;
        // Both streams are drained together; the first to pass the cap ends the command.
        let collect = async move {
            let mut o = Box::pin(read_capped(out_pipe, limit));
            let mut e = Box::pin(read_capped(err_pipe, limit));
            let (mut ro, mut re) = (None, None);
            while ro.is_none() || re.is_none() {
                tokio::select! {
                    r = &mut o, if ro.is_none() => {
                        if matches!(r, Capped::Over) {
                            return (r, Capped::Read(Vec::new()), None);
                        }
                        ro = Some(r);
                    }
                    r = &mut e, if re.is_none() => {
                        if matches!(r, Capped::Over) {
                            return (Capped::Read(Vec::new()), r, None);
                        }
                        re = Some(r);
                    }
                }
            }
            let status = child.wait().await;
            (
                ro.unwrap_or(Capped::Read(Vec::new())),
                re.unwrap_or(Capped::Read(Vec::new())),
                Some(status),
            )
        };
        let waited = tokio::time::timeout(timeout, collect).await;
        if let Some(w) = writer {
            w.abort();
        }
        let too_large = |stream: &'static str| ExecError::OutputTooLarge {
            host: self.name.clone(),
            stream,
            limit,
            what: describe(cmd),
        };
        match waited {
            Ok((Capped::Over, _, _)) | Ok((_, Capped::Over, _)) => {
                if let Some(pid) = pid {
                    kill_group(pid).await;
                }
                let stream = match waited {
                    Ok((Capped::Over, _, _)) => "stdout",
                    _ => "stderr",
                };
                Err(too_large(stream))
            }
            Ok((Capped::Read(stdout), Capped::Read(stderr), Some(Ok(status)))) => finish(
                &self.name,
                cmd,
                Output {
                    status: status.code().unwrap_or(-1),
                    stdout,
                    stderr,
                },
            ),
            Ok((Capped::Failed(e), _, _)) | Ok((_, Capped::Failed(e), _)) => {
                Err(self.session_err(format!("reading the output of sh failed: {e}")))
            }
            Ok((_, _, Some(Err(e)))) => {
                Err(self.session_err(format!("waiting for sh failed: {e}")))
            }
            Ok((_, _, None)) => Err(self.session_err("sh ended without a status".into())),
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

/// A stream read up to a cap.
enum Capped {
    Read(Vec<u8>),
    Over,
    Failed(std::io::Error),
}

/// Reads a child's pipe to its end, or stops one byte past `limit`.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> Capped {
    use tokio::io::AsyncReadExt;
    let Some(pipe) = pipe else {
        return Capped::Read(Vec::new());
    };
    let mut buf = Vec::new();
    match pipe.take(limit as u64 + 1).read_to_end(&mut buf).await {
        Ok(_) if buf.len() > limit => Capped::Over,
        Ok(_) => Capped::Read(buf),
        Err(e) => Capped::Failed(e),
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
