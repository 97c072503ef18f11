//! The `Component` trait: one service (module) of the stack. A component declares desired
//! resources per host (pure, snapshot-testable), and optionally runs cluster steps, uninstall
//! and names health probes (judged on the controller, see [`crate::health`]). Components never open connections themselves.

use async_trait::async_trait;
use std::sync::Arc;

use crate::context::Context;
use crate::executor::Executor;

pub use crate::error::ComponentError;
pub use crate::health::{HealthCheck, HealthRaw, HealthStatus, Probe};
use crate::inventory::Host;
pub use crate::ports::{Conflict, Listen};
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
    /// A manifest or chart was applied to a cluster (it differed from what runs).
    Apply,
    /// A member the inventory no longer lists was removed (a replaced Kubernetes node).
    RemoveMember,
    /// An object inside the service was created (a PostgreSQL role or database).
    Create,
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
            ClusterChangeKind::Apply => "apply",
            ClusterChangeKind::RemoveMember => "remove member",
            ClusterChangeKind::Create => "create",
        };
        write!(
            f,
            "{} {kind} on {}: {}",
            self.component, self.host, self.detail
        )
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

    /// Apply hosts one at a time, in the order of [`Component::roll_order`] (inventory order
    /// by default), calling [`Component::host_ready`] after each: for quorum services and
    /// bootstrap order (a leader before its replicas).
    fn rolling(&self) -> bool {
        false
    }

    /// The order a rolling component changes its hosts in, asked once per install run
    /// before the first host is changed (and only when some host has changes; an install
    /// that installs the component's packages first asks it before that phase too). `hosts` are
    /// the component's hosts in inventory order; the answer names each of them once. A
    /// component whose kept data decides who must go first (PostgreSQL after an uninstall
    /// that kept the data directories: the last primary) reads it here, and refuses with
    /// an error when it cannot tell. Default: inventory order.
    async fn roll_order(
        &self,
        _ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<String>, ComponentError> {
        Ok(hosts.iter().map(|h| h.host.hostname.clone()).collect())
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

    /// The TCP ports this component binds on a host it applies to, as data: the preflight
    /// checks each is free or held by the component's own service, and the postflight port
    /// map lists them. Pure.
    fn listens(&self, _ctx: &Context, _host: &Host) -> Vec<Listen> {
        Vec::new()
    }

    /// Files whose presence on a host means an install that conflicts with this component
    /// (checked by the preflight). Pure.
    fn conflicts(&self, _ctx: &Context, _host: &Host) -> Vec<Conflict> {
        Vec::new()
    }
}
