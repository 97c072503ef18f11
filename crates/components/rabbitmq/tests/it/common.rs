//! Shared fixtures: the example context with placeholder secrets, the RabbitMQ hosts, and
//! the CLI answers (as RabbitMQ 3.10.8 prints them) a fake host gives.

use kbz_core::{Component, Context, Host, Role};
use kbz_rabbitmq::Rabbitmq;

/// The example fleet (`examples/servers.tsv`, `examples/kbz.toml`), placeholder secrets.
pub fn example_ctx() -> Context {
    kbz_testkit::example_context(Rabbitmq.secret_names())
}

/// The RabbitMQ hosts in inventory order.
pub fn rabbit_hosts(ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .with_role(Role::Rabbitmq)
        .into_iter()
        .cloned()
        .collect()
}

/// `cluster_status --formatter json` with these members and running nodes.
pub fn status(disk: &[&str], running: &[&str]) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{{\"alarms\":[],\"cluster_name\":\"{}\",\"disk_nodes\":[{}],\"feature_flags\":[],\"listeners\":{{}},\"maintenance_status\":{{}},\"partitions\":{{}},\"ram_nodes\":[],\"running_nodes\":[{}],\"versions\":{{}}}}\n",
        disk.first().copied().unwrap_or(""),
        q(disk),
        q(running)
    )
}

/// The observation's answer of a running node without alarms: its cluster status, the
/// access sections ([`fresh_access`], [`converged_access`]) and the `ok`/`bad` login lines.
pub fn observation(status: &str, access: &str, auth: &str) -> String {
    format!("@@ running\nyes\n@@ local-alarms\n[]\n@@ cluster\n{status}@@ auth\n{auth}{access}")
}

/// The three example nodes.
pub const NODES: [&str; 3] = ["rabbit@mq1", "rabbit@mq2", "rabbit@mq3"];

/// The access script's answer on a node just started: guest only, the default vhost.
pub fn fresh_access() -> String {
    "@@ users\n[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n]\n@@ vhosts\n[\n{\"name\":\"/\",\"default_queue_type\":\"undefined\"}\n]\n@@ admin-permissions\nError:\nUser \"kbz_admin\" does not exist\n@@ app-permissions\nError:\nUser \"app\" does not exist\n@@ end\n".into()
}

/// The access script's answer once kbz's users and vhost exist.
pub fn converged_access() -> String {
    let full = |v: &str| {
        format!("{{\"vhost\":\"{v}\",\"configure\":\".*\",\"write\":\".*\",\"read\":\".*\"}}")
    };
    format!(
        "@@ users\n[\n{{\"user\":\"app\",\"tags\":[]}}\n,{{\"user\":\"kbz_admin\",\"tags\":[\"administrator\"]}}\n]\n@@ vhosts\n[\n{{\"name\":\"/\",\"default_queue_type\":\"undefined\"}}\n,{{\"name\":\"app\",\"default_queue_type\":\"quorum\"}}\n]\n@@ admin-permissions\n[\n{}\n,{}\n]\n@@ app-permissions\n[\n{}\n]\n@@ end\n",
        full("/"),
        full("app"),
        full("app")
    )
}
