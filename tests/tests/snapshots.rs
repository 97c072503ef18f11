//! Snapshots of what the stack renders for the bundled example inventory: every config file
//! of module 1 and the whole offline dry-run plan. Review changes with `cargo insta review`.

use async_trait::async_trait;
use kbz_core::executor::{Connector, ExecError, Executor};
use kbz_core::{Context, Engine, Host, RunOptions};
use kbz_testkit::rendered_files;
use std::sync::Arc;

/// The example with a placeholder for every secret of the stack.
fn example_context() -> Context {
    kbz_testkit::example_context(
        kbz_stack::components()
            .iter()
            .flat_map(|c| c.secret_names()),
    )
}

#[test]
fn base_files_for_the_example_inventory() {
    let ctx = example_context();
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let files = rendered_files(&kbz_base::Base, &ctx, &host);
    insta::assert_snapshot!("db1__base_files", files);
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
    insta::assert_snapshot!("fleet__example_plan", text);
}
