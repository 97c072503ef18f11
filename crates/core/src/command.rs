//! The data a transport moves: a command to run ([`Cmd`]), what it returned ([`Output`]) and
//! the facts a host reports once per run ([`Facts`]). A leaf module: the shell scripts and the
//! `Executor` trait both build on it.

use serde::Serialize;
use std::time::Duration;

/// Quotes a string for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A command to run on a host with `sh -c`.
///
/// Secrets never go into `script` or `env` (both are visible in `ps` on the host): pass them
/// on `stdin` or in a file written with [`crate::Executor::put_file`].
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
            s.push_str(&format!("export {}={}\n", k, quote(v)));
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

/// `cmd` tried up to three times two seconds apart, printing the last try's output when
/// every try failed: a service started right after its stop can fail while systemd still
/// removes the stopped unit's control group (status 219/CGROUP, seen in containers after
/// "Failed to kill control group").
pub fn retried_start(cmd: &str) -> String {
    format!(
        "i=0\nuntil out=$({cmd} 2>&1); do i=$((i+1)); if [ $i -ge 3 ]; then printf '%s\\n' \"$out\"; exit 1; fi; sleep 2; done\n"
    )
}
