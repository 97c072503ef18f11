//! [`RestoreHook`]: a component that keeps its own live state in another component's store
//! and must be held still around that store's restore. Patroni keeps its leader key, sync
//! state and member list in etcd: restoring etcd under a running Patroni would demote the
//! primary while etcd is down and leave every Patroni refusing the restored cluster (its
//! raft term is lower than the one Patroni last saw), so kbz-postgres pauses Patroni
//! before, and after the restore drops the keys that describe the live cluster, restarts
//! Patroni in pause and resumes it once the primary holds the leader key again.
//!
//! kbz-cli's `restore` runs, for each hook [`RestoreHook::around`] the restored component:
//! [`RestoreHook::before`], the component's restore, [`crate::backup::Backup::drop_keys`]
//! of [`RestoreHook::stale_keys`], then [`RestoreHook::after`].

use async_trait::async_trait;

use super::BackupError;
use crate::component::HostExec;
use crate::context::Context;
use crate::inventory::Host;

/// What [`RestoreHook::before`] did, handed to [`RestoreHook::after`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookState {
    /// The hook changed the service's state (paused it) and must undo that afterwards;
    /// `false` when the operator had already done it (then it is left as found).
    pub undo: bool,
    /// What the hook found or could not do, for the output (`etcd was down: Patroni could
    /// not be paused`).
    pub note: Option<String>,
    /// What stays done when the restore fails before [`RestoreHook::after`] runs, and how
    /// the operator undoes it (`Patroni stays paused: ... resume`).
    pub if_failed: Option<String>,
}

/// A component whose live state sits in another component's store (see the module docs).
#[async_trait]
pub trait RestoreHook: Send + Sync + std::fmt::Debug {
    /// The hook's own component (`postgres`).
    fn component(&self) -> &'static str;

    /// The component whose restore it surrounds (`etcd`).
    fn around(&self) -> &'static str;

    /// Whether `host` is one of the hook's own hosts.
    fn applies_to(&self, host: &Host) -> bool;

    /// What [`RestoreHook::before`] and [`RestoreHook::after`] do, for `--dry-run`.
    fn steps(&self, ctx: &Context) -> (Vec<String>, Vec<String>);

    /// Keys of the restored store that describe the live cluster at backup time and must
    /// go before [`RestoreHook::after`]; a key ending in `/` names every key under it.
    fn stale_keys(&self, ctx: &Context) -> Vec<String>;

    /// Runs before the restore touches anything.
    async fn before(&self, ctx: &Context, hosts: &[HostExec]) -> Result<HookState, BackupError>;

    /// Runs after the restore and the removal of the stale keys; returns what it did.
    async fn after(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
        state: &HookState,
    ) -> Result<String, BackupError>;
}
