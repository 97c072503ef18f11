//! `SshOptions`: how to reach and authenticate to hosts, read from `[ssh]` in kbz.toml.

use super::*;

/// How to reach and authenticate to hosts. User and port come from each inventory [`Host`].
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Private key file (not protected by a passphrase); ssh-agent is used when `None`.
    pub key: Option<PathBuf>,
    /// The ssh-agent socket; `None` uses `SSH_AUTH_SOCK` (read by libssh2).
    pub agent_socket: Option<PathBuf>,
    /// known_hosts file every host key (bastion included) is checked against.
    pub known_hosts: PathBuf,
    /// Record the key of a host missing from known_hosts instead of refusing it (E015).
    /// A key that differs from a recorded one is refused either way (E014).
    pub accept_new_host_keys: bool,
    /// TCP connect, and each step of the SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Default per-command timeout (a [`Cmd`] may set its own).
    pub command_timeout: Duration,
    /// Optional bastion.
    pub jump: Option<JumpHost>,
    /// Run commands through `sudo -n` when the SSH user is not root.
    pub sudo: bool,
    /// Told about every host key recorded by `accept_new_host_keys` (the binaries print its
    /// fingerprint, so the operator can compare it with the host's own).
    pub on_new_host_key: Option<KeyRecorded>,
    /// Liveness probe interval while a command runs, and the TCP keepalive/user timeout of
    /// the connection: a peer that answers nothing for [`KEEPALIVE_COUNT`] intervals (frozen,
    /// powered off, its traffic dropped) fails the command with E017.
    pub keepalive: Duration,
    /// The most bytes kept of one command's stdout, and of its stderr: past it the command
    /// fails with E068 and the session is dropped (a runaway or hostile host cannot exhaust
    /// the controller's memory).
    pub max_output: usize,
}

/// The default [`SshOptions::keepalive`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);

/// The default cap on one command's captured stdout (and on its stderr): 64 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// A host key that `accept_new_host_keys` recorded in known_hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    /// The known_hosts name (`host` or `[host]:port`).
    pub host: String,
    /// Key type (`ssh-ed25519`).
    pub key_type: String,
    /// OpenSSH fingerprint (`SHA256:` and the unpadded base64 of the key's sha256).
    pub fingerprint: String,
}

/// The callback told about each recorded key.
#[derive(Clone)]
pub struct KeyRecorded(pub Arc<dyn Fn(&RecordedKey) + Send + Sync>);

impl std::fmt::Debug for KeyRecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRecorded")
    }
}

impl SshOptions {
    /// Options with the given known_hosts file and the defaults of `[timeouts]`: agent
    /// authentication, new host keys refused, sudo for non-root users, no jump host.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        let t = kbz_core::config::Timeouts::default();
        SshOptions {
            key: None,
            agent_socket: None,
            known_hosts: known_hosts.into(),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(t.connect),
            command_timeout: Duration::from_secs(t.command),
            jump: None,
            sudo: true,
            on_new_host_key: None,
            keepalive: DEFAULT_KEEPALIVE,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Options from `[ssh]` and `[timeouts]` of kbz.toml, with `~` expanded from `HOME`;
    /// known_hosts defaults to `~/.ssh/known_hosts`. Fails (E018) on a malformed jump host.
    pub fn from_config(cfg: &Config) -> Result<Self, ExecError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::from_config_with_home(cfg, home.as_deref())
    }

    pub(super) fn from_config_with_home(
        cfg: &Config,
        home: Option<&Path>,
    ) -> Result<Self, ExecError> {
        let known_hosts = cfg
            .ssh
            .known_hosts
            .as_deref()
            .unwrap_or("~/.ssh/known_hosts");
        let mut o = SshOptions::new(expand_tilde(known_hosts, home));
        o.key = cfg.ssh.key.as_deref().map(|k| expand_tilde(k, home));
        o.jump = cfg
            .ssh
            .jump_host
            .as_deref()
            .filter(|j| !j.trim().is_empty())
            .map(JumpHost::parse)
            .transpose()?;
        o.connect_timeout = Duration::from_secs(cfg.timeouts.connect.max(1));
        o.command_timeout = Duration::from_secs(cfg.timeouts.command.max(1));
        Ok(o)
    }

    /// Sets the private key file.
    pub fn key(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(path.into());
        self
    }

    /// Sets the ssh-agent socket.
    pub fn agent_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_socket = Some(path.into());
        self
    }

    /// Accepts and records keys of hosts missing from known_hosts.
    pub fn accept_new_host_keys(mut self, yes: bool) -> Self {
        self.accept_new_host_keys = yes;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the default command timeout.
    pub fn command_timeout(mut self, t: Duration) -> Self {
        self.command_timeout = t;
        self
    }

    /// Sets the jump host.
    pub fn jump(mut self, jump: JumpHost) -> Self {
        self.jump = Some(jump);
        self
    }

    /// Sets the keepalive interval (at least one second).
    pub fn keepalive(mut self, t: Duration) -> Self {
        self.keepalive = t.max(Duration::from_secs(1));
        self
    }

    /// Sets the cap on one command's captured stdout and stderr.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Enables or disables `sudo -n` for non-root users.
    pub fn sudo(mut self, yes: bool) -> Self {
        self.sudo = yes;
        self
    }
}

/// Expands a leading `~` or `~/` with `home`; other paths are returned as they are.
pub(super) fn expand_tilde(path: &str, home: Option<&Path>) -> PathBuf {
    match (path, home) {
        ("~", Some(h)) => h.to_path_buf(),
        (p, Some(h)) if p.starts_with("~/") => h.join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}
