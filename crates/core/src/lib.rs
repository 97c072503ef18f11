//! kbz-core: the model and the engine. Inventory, config and secrets come in; components
//! declare desired [`Resource`]s per host; the [`Engine`] probes hosts through an
//! [`Executor`], diffs, applies, journals undo steps and rolls back on failure.
//!
//! This crate never opens a network connection itself and never prints: executors come from
//! `kbz-exec` (or the embedding tool), output is the caller's business.
//!
//! # From inputs to a converged host
//!
//! The three entry points an embedding tool calls (docs/embedding.md walks through them, and
//! `examples/embed` is a complete tool): load the inputs, build an [`Engine`] with components
//! and a [`Connector`], run a plan. Here the hosts are kbz-testkit's in-memory fakes; a real
//! tool passes `kbz_exec::SshConnector` instead.
//!
//! ```
//! use kbz_core::{Component, ComponentError, Config, Context, Engine, Host, Inventory};
//! use kbz_core::{Resource, RunOptions, Secrets};
//! use std::sync::Arc;
//!
//! /// A component of the embedding tool: one file on every host.
//! #[derive(Debug)]
//! struct Motd;
//!
//! impl Component for Motd {
//!     fn name(&self) -> &'static str { "motd" }
//!     fn module(&self) -> u8 { 11 }
//!     fn desired(&self, _ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
//!         let text = format!("{} is managed by my-tool\n", host.hostname);
//!         Ok(vec![Resource::file("/etc/motd", text, 0o644)])
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // 1. Inputs: every problem of either file is reported at once, as E-coded diagnostics.
//! let inventory = Inventory::parse("servers.tsv", b"node1\t192.0.2.11\tmonitoring\n")
//!     .expect("a valid inventory");
//! let config = Config::parse("kbz.toml", "[cluster]\nname = \"demo\"\n").expect("valid");
//! assert!(kbz_core::validate::validate(&inventory, &config, "kbz.toml").is_empty());
//! let ctx = Context::new(inventory, config, Secrets::in_memory());
//!
//! // 2. The engine: components in any order (they run by module), and a connector.
//! let fleet = Arc::new(kbz_testkit::FakeConnector::debian_fleet(&ctx.inventory.hosts));
//! let engine = Engine::new(ctx, vec![Arc::new(Motd)], fleet.clone());
//!
//! // 3. A plan: shown first (dry-run: nothing changes), then applied, then converged.
//! let plan = engine.run(&RunOptions { dry_run: true, ..RunOptions::default() }).await;
//! assert_eq!(plan.expect("dry-run").plan.operations(), 1);
//! let first = engine.run(&RunOptions::default()).await.expect("first run");
//! assert_eq!(first.summary.changed, 1);
//! let second = engine.run(&RunOptions::default()).await.expect("second run");
//! assert_eq!(second.summary.changed, 0);
//! let motd = &fleet.host("node1").expect("node1").state().files["/etc/motd"];
//! assert_eq!(motd.content, b"node1 is managed by my-tool\n");
//! # }
//! ```

pub mod allow;
pub mod artifact;
pub mod backup;
pub mod batch;
pub mod cache;
pub mod command;
pub mod component;
pub mod config;
pub mod context;
pub mod engine;
pub mod error;
pub mod executor;
pub mod health;
pub mod health_run;
pub mod hostlock;
pub mod inventory;
pub mod journal;
pub mod net;
pub mod notifier;
pub mod pki;
pub mod plan;
pub mod ports;
pub mod preflight;
pub mod redact;
pub mod resource;
pub mod runlock;
pub mod secret;
pub mod shell;
pub mod template;
pub mod toml_lines;
pub mod validate;
pub mod wait;

/// The attribute [`Component`] and [`Executor`] implementations with async methods use.
pub use async_trait::async_trait;
/// The error catalogue ([`errors::Code`], [`errors::Diagnostic`]) this crate's API speaks,
/// re-exported so an embedding tool needs no version of kbz-errors of its own.
pub use kbz_errors as errors;

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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// The modules each module of this crate names through `crate::<module>`.
    fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(&src).expect("src") {
            let path = entry.expect("entry").path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if name == "lib" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            // Test modules may use anything; doc links are not dependencies.
            let text: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let deps: BTreeSet<String> = text
                .match_indices("crate::")
                .map(|(i, _)| {
                    text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .filter(|d| !d.is_empty() && d != name && d.chars().all(|c| !c.is_uppercase()))
                .collect();
            graph.insert(name.to_string(), deps);
        }
        graph
    }

    #[test]
    fn modules_do_not_depend_on_each_other_in_a_cycle() {
        let graph = module_graph();
        assert!(graph.contains_key("executor") && graph.contains_key("shell"));
        // Depth-first search for a back edge, reporting the cycle's path.
        fn visit(
            n: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = stack.iter().position(|s| s == n) {
                let mut cycle = stack[i..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            if done.contains(n) {
                return None;
            }
            stack.push(n.to_string());
            for d in graph.get(n).into_iter().flatten() {
                if let Some(c) = visit(d, graph, stack, done) {
                    return Some(c);
                }
            }
            stack.pop();
            done.insert(n.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for n in graph.keys() {
            if let Some(cycle) = visit(n, &graph, &mut Vec::new(), &mut done) {
                panic!("module cycle in kbz-core: {}", cycle.join(" -> "));
            }
        }
        // The cycles this test was written for stay broken.
        assert!(!graph["shell"].contains("executor"));
        assert!(!graph["context"].contains("component"));
    }
}
