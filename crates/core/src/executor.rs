//! The `Executor` trait: the one narrow door through which kbz touches a host, plus the
//! `Connector` that opens executors for inventory hosts.
//!
//! Required methods are the transport primitives (`run`, `put_file`); everything else has a
//! default built from them with the shell scripts in [`crate::shell`]. Test doubles (the fake
//! host) override `probe` and `apply` to act on in-memory state instead.

use async_trait::async_trait;
use std::sync::Arc;

use crate::inventory::Host;
use crate::resource::{Observed, Op, Resource};
use crate::shell;

pub use crate::command::{Cmd, Facts, Output};
pub use crate::error::ExecError;

/// One host's transport. Implementations: `kbz_exec::SshExecutor`, `LocalExecutor`, and
/// `kbz_testkit::FakeHost` for tests.
#[async_trait]
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The name used in messages (inventory hostname).
    fn name(&self) -> &str;

    /// Runs a command and returns its output whatever its exit status.
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError>;

    /// Writes a file atomically (temporary file in the same directory, then rename) with mode
    /// and owner (`user:group`).
    async fn put_file(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), ExecError> {
        let out = self
            .run(
                &Cmd::new(shell::put_file_script(path, mode, owner, content))
                    .stdin(content.to_vec()),
            )
            .await?;
        check(self.name(), &out, &format!("write {path}"))
    }

    /// Pushes a local file (a pinned artifact from the download cache) to `path` atomically,
    /// then checks that the host's copy has `sha256`. The default reads the file into memory
    /// and uses [`Executor::put_file`].
    async fn put_local_file(
        &self,
        path: &str,
        local: &std::path::Path,
        sha256: &str,
        mode: u32,
        owner: &str,
    ) -> Result<(), ExecError> {
        let content = tokio::fs::read(local).await.map_err(|e| ExecError::File {
            host: "controller".into(),
            path: local.display().to_string(),
            reason: e.to_string(),
        })?;
        self.put_file(path, &content, mode, owner).await?;
        let out = self
            .run(&Cmd::new(format!(
                "sha256sum < {} | cut -d' ' -f1",
                shell::quote(path)
            )))
            .await?;
        check(self.name(), &out, &format!("checksum {path}"))?;
        let got = out.stdout_str().trim().to_ascii_lowercase();
        if got != sha256 {
            return Err(ExecError::File {
                host: self.name().into(),
                path: path.into(),
                reason: format!(
                    "after the transfer the file has sha256 {got}, expected {sha256}; the \
                     copy on the host is damaged (disk full?)"
                ),
            });
        }
        Ok(())
    }

    /// Reads a file; `None` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError> {
        let q = shell::quote(path);
        let out = self
            .run(&Cmd::new(format!(
                "if [ -e {q} ]; then echo present; base64 -w0 {q}; else echo absent; fi"
            )))
            .await?;
        check(self.name(), &out, &format!("read {path}"))?;
        shell::parse_read_file(self.name(), &out.stdout_str())
    }

    /// Gathers [`Facts`] in one round trip.
    async fn facts(&self) -> Result<Facts, ExecError> {
        let out = self.run(&Cmd::new(shell::FACTS_SCRIPT)).await?;
        check(self.name(), &out, "gather facts")?;
        Ok(shell::parse_facts(&out.stdout_str()))
    }

    /// Observes the current state of every resource in one round trip.
    async fn probe(&self, resources: &[Resource]) -> Result<Vec<Observed>, ExecError> {
        let out = self.run(&shell::probe_cmd(resources)).await?;
        check(self.name(), &out, "probe current state")?;
        shell::parse_probe(self.name(), resources, &out.stdout_str())
    }

    /// Applies one operation.
    async fn apply(&self, op: &Op) -> Result<(), ExecError> {
        match op {
            Op::WriteFile {
                path,
                content,
                mode,
                owner,
            } => self.put_file(path, content, *mode, owner).await,
            _ => {
                let out = self.run(&shell::op_cmd(op)).await?;
                check(self.name(), &out, &op.describe())
            }
        }
    }

    /// Takes the host lock at `path` for `owner` (one line naming the run) in one round trip:
    /// `None` when taken, the holder's line when another run holds it.
    async fn lock_host(&self, path: &str, owner: &str) -> Result<Option<String>, ExecError> {
        let out = self
            .run(&Cmd::new(shell::host_lock_script(path, owner)))
            .await?;
        check(self.name(), &out, &format!("take the host lock {path}"))?;
        shell::parse_host_lock(self.name(), &out.stdout_str())
    }

    /// Releases the host lock at `path` if `owner` still holds it.
    async fn unlock_host(&self, path: &str, owner: &str) -> Result<(), ExecError> {
        let out = self
            .run(&Cmd::new(shell::host_unlock_script(path, owner)))
            .await?;
        check(self.name(), &out, &format!("release the host lock {path}"))
    }

    /// Round trips made so far, for executors that count them.
    fn round_trips(&self) -> u64 {
        0
    }
}

/// Turns a non-zero exit into [`ExecError::CommandFailed`].
pub fn check(host: &str, out: &Output, what: &str) -> Result<(), ExecError> {
    if out.success() {
        return Ok(());
    }
    if let Some(e) = shell::transfer_error(host, what, out) {
        return Err(e);
    }
    let stderr = out.stderr_str();
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(ExecError::CommandFailed {
        host: host.to_string(),
        status: out.status,
        what: what.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Opens executors for inventory hosts.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects to a host; the executor is reused for every command of the run.
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError>;
}
