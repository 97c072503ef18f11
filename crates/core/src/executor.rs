//! The `Executor` trait: the one narrow door through which kbz touches a host, plus the
//! `Connector` that opens executors for inventory hosts.
//!
//! Required methods are the transport primitives (`run`, `put_file`); everything else has a
//! default built from them with the shell scripts in [`crate::shell`]. Test doubles (the fake
//! host) override `probe` and `apply` to act on in-memory state instead.

use async_trait::async_trait;
use kbz_errors::{Code, HasCode};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::Host;
use crate::resource::{Observed, Op, Resource};
use crate::shell;

/// A command to run on a host with `sh -c`.
///
/// Secrets never go into `script` or `env` (both are visible in `ps` on the host): pass them
/// on `stdin` or in a file written with [`Executor::put_file`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cmd {
    /// Shell script, run by `sh -c`.
    pub script: String,
    /// Bytes written to the command's standard input.
    #[serde(skip)]
    pub stdin: Option<Vec<u8>>,
    /// Environment variables exported before the script runs.
    pub env: Vec<(String, String)>,
    /// Per-command timeout; the executor's default when `None`.
    pub timeout: Option<Duration>,
}

impl Cmd {
    /// A command from a script.
    pub fn new(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            ..Self::default()
        }
    }

    /// Sets standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets a timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// The script with the environment exported in front of it.
    pub fn full_script(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            s.push_str(&format!("export {}={}\n", k, shell::quote(v)));
        }
        s.push_str(&self.script);
        s
    }
}

/// What a command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status (`-1` when killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// True on exit status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Standard output as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Transport and remote-command failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// TCP connection failed.
    #[error("cannot reach {host}:{port}: {reason}. Check that the host is up and that port {port} is open from this machine (nc -vz {host} {port}).")]
    Unreachable {
        /// Host address.
        host: String,
        /// SSH port.
        port: u16,
        /// OS error text.
        reason: String,
    },
    /// SSH handshake failed.
    #[error("SSH handshake with {host} failed: {reason}")]
    Handshake {
        /// Host.
        host: String,
        /// Library error text.
        reason: String,
    },
    /// Authentication failed.
    #[error("SSH authentication as {user}@{host} failed: {reason}. Install the public key with ssh-copy-id {user}@{host}, or load it into ssh-agent (ssh-add).")]
    Auth {
        /// Host.
        host: String,
        /// User.
        user: String,
        /// Detail.
        reason: String,
    },
    /// The host presented a key different from known_hosts.
    #[error("host key of {host} does not match {known_hosts}: refusing to connect (possible man-in-the-middle). If the host was reinstalled, remove the old key with ssh-keygen -R {host} -f {known_hosts}.")]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// known_hosts path.
        known_hosts: String,
    },
    /// The host is not in known_hosts.
    #[error("host key of {host} is not in {known_hosts}: refusing to connect. Verify the fingerprint and add it (ssh-keyscan -p PORT -H ADDRESS >> {known_hosts}), or pass --accept-new-host-keys.")]
    HostKeyUnknown {
        /// Host.
        host: String,
        /// known_hosts path.
        known_hosts: String,
    },
    /// A command ran past its timeout.
    #[error("command on {host} timed out after {secs}s: {what}")]
    Timeout {
        /// Host.
        host: String,
        /// Seconds.
        secs: u64,
        /// Short description of the command.
        what: String,
    },
    /// The session or a transfer broke.
    #[error("SSH session to {host} failed: {reason}")]
    Session {
        /// Host.
        host: String,
        /// Detail.
        reason: String,
    },
    /// The jump host failed.
    #[error("jump host {jump} failed while connecting to {host}: {reason}")]
    Jump {
        /// Jump host.
        jump: String,
        /// Target host.
        host: String,
        /// Detail.
        reason: String,
    },
    /// A command exited non-zero.
    #[error("command on {host} failed with status {status}: {what}\n{stderr}")]
    CommandFailed {
        /// Host.
        host: String,
        /// Exit status.
        status: i32,
        /// Short description of the command.
        what: String,
        /// Last lines of stderr.
        stderr: String,
    },
    /// A local or remote file operation failed.
    #[error("file operation on {host} failed for {path}: {reason}")]
    File {
        /// Host.
        host: String,
        /// Path.
        path: String,
        /// Detail.
        reason: String,
    },
    /// The private key could not be used.
    #[error("SSH key {path} cannot be used: {reason}")]
    Key {
        /// Key path.
        path: String,
        /// Detail.
        reason: String,
    },
    /// The remote output could not be understood.
    #[error("unexpected output from {host}: {reason}")]
    Protocol {
        /// Host.
        host: String,
        /// Detail.
        reason: String,
    },
    /// sudo failed.
    #[error("sudo on {host} failed for user {user}: {reason}. Allow passwordless sudo for {user} (echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/kbz).")]
    Sudo {
        /// Host.
        host: String,
        /// User.
        user: String,
        /// Detail.
        reason: String,
    },
}

impl HasCode for ExecError {
    fn code(&self) -> Code {
        match self {
            ExecError::Unreachable { .. } => Code::E011,
            ExecError::Handshake { .. } => Code::E012,
            ExecError::Auth { .. } => Code::E013,
            ExecError::HostKeyMismatch { .. } => Code::E014,
            ExecError::HostKeyUnknown { .. } => Code::E015,
            ExecError::Timeout { .. } => Code::E016,
            ExecError::Session { .. } => Code::E017,
            ExecError::Jump { .. } => Code::E018,
            ExecError::CommandFailed { .. } => Code::E021,
            ExecError::File { .. } => Code::E022,
            ExecError::Key { .. } => Code::E053,
            ExecError::Protocol { .. } => Code::E017,
            ExecError::Sudo { .. } => Code::E027,
        }
    }
}

/// Facts gathered from a host once per run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// `ID` from /etc/os-release (`debian`, `ubuntu`).
    pub os_id: String,
    /// `VERSION_ID` from /etc/os-release (`12`).
    pub os_version: String,
    /// `uname -m`.
    pub arch: String,
    /// Current hostname.
    pub hostname: String,
    /// Addresses and the interfaces that hold them (`ip -o addr show`).
    pub addresses: Vec<(String, std::net::IpAddr)>,
}

impl Facts {
    /// The interface holding `ip`, if any.
    pub fn interface_of(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.addresses
            .iter()
            .find(|(_, a)| *a == ip)
            .map(|(i, _)| i.as_str())
    }

    /// Whether kbz supports this OS (Debian or Ubuntu).
    pub fn supported_os(&self) -> bool {
        matches!(self.os_id.as_str(), "debian" | "ubuntu")
    }
}

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
            .run(&Cmd::new(shell::put_file_script(path, mode, owner)).stdin(content.to_vec()))
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
        let out = self.run(&Cmd::new(shell::probe_script(resources))).await?;
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
