//! kbz-core: the model and the engine. Inventory, config and secrets come in; components
//! declare desired [`Resource`]s per host; the [`Engine`] probes hosts through an
//! [`Executor`], diffs, applies, journals undo steps and rolls back on failure.
//!
//! This crate never opens a network connection itself and never prints: executors come from
//! `kbz-exec` (or the embedding tool), output is the caller's business.

pub mod artifact;
pub mod cache;
pub mod component;
pub mod config;
pub mod context;
pub mod engine;
pub mod executor;
pub mod health;
pub mod inventory;
pub mod journal;
pub mod net;
pub mod notifier;
pub mod plan;
pub mod redact;
pub mod resource;
pub mod secret;
pub mod shell;
pub mod template;
pub mod validate;
pub mod wait;

pub use cache::Cache;
pub use component::{ClusterChange, ClusterChangeKind, Component, ComponentError};
pub use config::Config;
pub use context::Context;

pub use executor::{Cmd, Connector, ExecError, Executor, Output};
pub use inventory::{Host, Inventory, Role};
pub use notifier::{Level, Notifier};

pub use engine::{Engine, EngineError, RunOptions, RunReport};
pub use plan::{Change, Plan};
pub use redact::Redactor;
pub use resource::Resource;
pub use secret::{Secret, Secrets};
