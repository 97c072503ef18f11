//! Snapshots of what the stack renders for the bundled example inventory: every config file
//! of module 1 and the whole offline dry-run plan. Review changes with `cargo insta review`.

use async_trait::async_trait;
use kbz_core::executor::{Connector, ExecError, Executor};
use kbz_core::{Config, Context, Engine, Host, Inventory, Resource, RunOptions, Secrets};
use std::path::Path;
use std::sync::Arc;

fn example_context() -> Context {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let inv = Inventory::load(&root.join("examples/servers.tsv")).expect("example inventory");
    let cfg = Config::load(&root.join("examples/kbz.toml")).expect("example config");
    let names = kbz_stack::components()
        .iter()
        .flat_map(|c| c.secret_names())
        .collect::<Vec<_>>();
    Context::new(inv, cfg, Secrets::placeholders(names))
}

#[test]
fn base_files_for_the_example_inventory() {
    let ctx = example_context();
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let resources = kbz_core::Component::desired(&kbz_base::Base, &ctx, &host).expect("desired");
    let mut files = String::new();
    for r in resources {
        if let Resource::File {
            path,
            content,
            mode,
            owner,
            present,
        } = r
        {
            files.push_str(&format!(
                "=== {path} mode {mode:04o} {owner} present={present}\n"
            ));
            files.push_str(&String::from_utf8_lossy(&content));
        }
    }
    insta::assert_snapshot!("base_files_db1", files);
}

/// Plans without connecting: every host is fresh.
struct Offline;

#[async_trait]
impl Connector for Offline {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        Err(ExecError::Unreachable {
            host: host.ip.to_string(),
            port: host.ssh_port,
            reason: "offline".into(),
        })
    }
}

#[tokio::test]
async fn offline_plan_of_the_example_fleet() {
    let engine = Engine::new(
        example_context(),
        kbz_stack::components(),
        Arc::new(Offline),
    );
    let report = engine
        .run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        })
        .await
        .expect("plan");
    let text = report.plan.render();
    assert!(
        !text.contains("PLACEHOLDER"),
        "a secret leaked into the plan"
    );
    insta::assert_snapshot!("example_plan", text);
}
