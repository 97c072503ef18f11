//! The crate's shared error types: [`ExecError`] (transport and remote commands) and
//! [`ComponentError`] (what a component's step can fail with). Their own module, so the
//! modules that produce them (executor, shell, context, template, wait) do not depend on
//! each other through them.

use kbz_errors::{Code, Diagnostic, HasCode};

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
    /// A file or script sent on standard input arrived incomplete or different (length or
    /// sha256): the host moved nothing into place and ran nothing.
    #[error("transfer to {host} was cut or damaged, nothing was installed or run ({what}): {detail}. Check the network to the host (and its free disk space: `df -h`), then run again.")]
    Transfer {
        /// Host.
        host: String,
        /// Short description of the command.
        what: String,
        /// What arrived (bytes and sha256 against those sent).
        detail: String,
    },
    /// A command printed more than the controller keeps (a runaway or hostile host).
    #[error("command on {host} printed more than {limit} bytes on {stream}, the controller stopped reading it: {what}. Find what floods the output on the host (a command run in a loop, a huge log file printed).")]
    OutputTooLarge {
        /// Host.
        host: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The cap in bytes.
        limit: usize,
        /// Short description of the command.
        what: String,
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
            ExecError::Transfer { .. } => Code::E017,
            ExecError::OutputTooLarge { .. } => Code::E068,
        }
    }
}

/// Component failures.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// A template failed to render.
    #[error("template {template} failed to render: {reason}")]
    Render {
        /// Template name.
        template: String,
        /// Detail.
        reason: String,
    },
    /// A readiness wait ran out of time.
    #[error("timed out after {secs}s waiting for {what}")]
    Readiness {
        /// What was awaited.
        what: String,
        /// Seconds waited.
        secs: u64,
    },
    /// A daemon's validator rejected a rendered config.
    #[error("{validator} rejected {file}: {reason}")]
    Validation {
        /// Validator command.
        validator: String,
        /// File.
        file: String,
        /// Validator output.
        reason: String,
    },
    /// Bootstrapping a cluster failed.
    #[error("cluster bootstrap of {component} failed: {reason}")]
    Bootstrap {
        /// Component.
        component: String,
        /// Detail.
        reason: String,
    },
    /// A secret was used that the component did not declare.
    #[error("secret `{0}` was not generated: declare it in Component::secret_names")]
    MissingSecret(String),
    /// The inventory or config cannot serve this component.
    #[error("{0}")]
    Input(Diagnostic),
    /// A running cluster did not reach the state it must be in: no quorum (E036), a VIP held
    /// by no host or by several (E037), replication that does not stream (E038), Sentinels
    /// that do not agree (E039).
    #[error("{message}")]
    Cluster {
        /// Catalogue code of the failure.
        code: Code,
        /// What is wrong, with what was observed.
        message: String,
        /// The host the failure was seen on, when one is to blame.
        host: Option<String>,
        /// A fix specific to this failure; the catalogue's general solutions follow it.
        hint: Option<String>,
    },
    /// The host's OS is not supported.
    #[error("{host} runs {os}; supported: Debian 11/12, Ubuntu 20.04/22.04/24.04")]
    UnsupportedOs {
        /// Host.
        host: String,
        /// OS id and version.
        os: String,
    },
    /// An operation of the plan failed on a host; `code` says which kind (package, service,
    /// kernel setting, file, command).
    #[error("{what} failed: {source}")]
    Operation {
        /// The operation (`install packages chrony`).
        what: String,
        /// Catalogue code for this kind of operation.
        code: Code,
        /// The remote failure.
        source: ExecError,
    },
    /// A pinned artifact could not be fetched or failed its sha256 (E020, E028, E030).
    #[error(transparent)]
    Artifact(crate::cache::CacheError),
    /// The run journal could not be written, so the change was not started.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A remote operation failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl HasCode for ComponentError {
    fn code(&self) -> Code {
        match self {
            ComponentError::Render { .. } => Code::E034,
            ComponentError::Readiness { .. } => Code::E031,
            ComponentError::Validation { .. } => Code::E033,
            ComponentError::Bootstrap { .. } => Code::E035,
            ComponentError::MissingSecret(_) => Code::E052,
            ComponentError::Input(d) => d.code,
            ComponentError::Cluster { code, .. } => *code,
            ComponentError::UnsupportedOs { .. } => Code::E032,
            ComponentError::Operation { code, .. } => *code,
            ComponentError::Artifact(e) => e.code(),
            ComponentError::Journal(e) => e.code(),
            ComponentError::Exec(e) => e.code(),
        }
    }
}

impl ComponentError {
    /// The host a cluster failure was seen on, if it names one.
    pub fn host(&self) -> Option<&str> {
        match self {
            ComponentError::Cluster { host, .. } => host.as_deref(),
            _ => None,
        }
    }

    /// The specific fix of a cluster failure, if it has one (an [`ComponentError::Input`]
    /// diagnostic shows its own).
    pub fn hint(&self) -> Option<&str> {
        match self {
            ComponentError::Cluster { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_failures_carry_their_code_host_and_fix() {
        let e = ComponentError::Cluster {
            code: Code::E036,
            message: "etcd has no quorum after waiting 5s: 1 of 3 members healthy".into(),
            host: Some("db1".into()),
            hint: Some("start etcd on the other members".into()),
        };
        assert_eq!(e.code(), Code::E036);
        assert_eq!(
            e.to_string(),
            "etcd has no quorum after waiting 5s: 1 of 3 members healthy"
        );
        assert_eq!(e.host(), Some("db1"));
        assert_eq!(e.hint(), Some("start etcd on the other members"));
        let input = ComponentError::Input(Diagnostic::new(Code::E008, "bad").hint("fix it"));
        assert_eq!(input.code(), Code::E008);
        assert_eq!((input.host(), input.hint()), (None, None));
    }
}
