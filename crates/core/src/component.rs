//! The `Component` trait: one service (module) of the stack. A component declares desired
//! resources per host (pure, snapshot-testable), and optionally runs cluster steps, uninstall
//! and names health probes (judged on the controller, see [`crate::health`]). Components never open connections themselves.

use async_trait::async_trait;
use kbz_errors::{Code, Diagnostic, HasCode};
use std::sync::Arc;

use crate::context::Context;
use crate::executor::{ExecError, Executor};
pub use crate::health::{HealthCheck, HealthRaw, HealthStatus, Probe};
use crate::inventory::Host;
use crate::resource::Resource;

/// A host and its executor, handed to cluster steps and health probes.
#[derive(Debug, Clone)]
pub struct HostExec {
    /// The inventory host.
    pub host: Host,
    /// Its executor.
    pub exec: Arc<dyn Executor>,
}

/// What a cluster step did to a running cluster: one action with the host it was taken on.
/// A converged cluster yields none, so a re-run reports 0 cluster changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterChange {
    /// Component that took the action (the engine fills it in).
    pub component: String,
    /// Host the action was taken on.
    pub host: String,
    /// Kind of action.
    pub kind: ClusterChangeKind,
    /// What was done, with the state that caused it (never a secret).
    pub detail: String,
}

/// Kinds of cluster actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterChangeKind {
    /// A new cluster was created (its first member started it).
    Bootstrap,
    /// A member joined an existing cluster.
    Join,
    /// A node was told to replicate from the master (`REPLICAOF`).
    ReplicaOf,
    /// A Sentinel started monitoring the master (`SENTINEL MONITOR`).
    SentinelMonitor,
    /// A Sentinel's parameters were corrected (`SENTINEL SET`).
    SentinelSet,
}

impl ClusterChange {
    /// A change on `host`; the engine sets the component.
    pub fn new(
        kind: ClusterChangeKind,
        host: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        ClusterChange {
            component: String::new(),
            host: host.into(),
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for ClusterChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ClusterChangeKind::Bootstrap => "bootstrap",
            ClusterChangeKind::Join => "join",
            ClusterChangeKind::ReplicaOf => "replicaof",
            ClusterChangeKind::SentinelMonitor => "sentinel monitor",
            ClusterChangeKind::SentinelSet => "sentinel set",
        };
        write!(
            f,
            "{} {kind} on {}: {}",
            self.component, self.host, self.detail
        )
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

/// One service of the stack.
#[async_trait]
pub trait Component: Send + Sync + std::fmt::Debug {
    /// Short name used by `--only` (`base`, `keepalived`).
    fn name(&self) -> &'static str;

    /// Module number (1-10); modules run in this order.
    fn module(&self) -> u8;

    /// Secrets this component reads from the context; generated before planning.
    fn secret_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether this host takes part (usually: has the component's role).
    fn applies_to(&self, _host: &Host) -> bool {
        true
    }

    /// Desired resources on one host. Pure: no I/O.
    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError>;

    /// Apply hosts one at a time, in inventory order, calling [`Component::host_ready`] after
    /// each: for quorum services and bootstrap order (a leader before its replicas).
    fn rolling(&self) -> bool {
        false
    }

    /// Waits until a host that was just changed serves again (rolling components only).
    async fn host_ready(
        &self,
        _ctx: &Context,
        _host: &HostExec,
        _changed: bool,
    ) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Resources that remove the component from a host (for `kbz-install uninstall`).
    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(Vec::new())
    }

    /// Cluster steps run after every host's resources are applied (bootstrap order,
    /// readiness waits), with the run's context (facts included). Returns every action it
    /// took on the cluster; must be idempotent and return none on a converged cluster.
    async fn converge_cluster(
        &self,
        _ctx: &Context,
        _hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        Ok(Vec::new())
    }

    /// Read-only probes for `kbz-health` on one host this component applies to. Every
    /// component's probes for a host are joined into one script: one round trip per host.
    fn health_probes(&self, _ctx: &Context, _host: &Host) -> Vec<Probe> {
        Vec::new()
    }

    /// Judges the probes' outputs of every host this component applies to (on the
    /// controller, pure): member checks fail as degraded, checks of the service as a whole
    /// (quorum, leader, VIP) as down.
    fn health_checks(&self, _ctx: &Context, _raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        Vec::new()
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
