//! Snapshots of every file kbz renders for RabbitMQ on the example inventory (mq1-mq3 carry
//! the rabbitmq role), with placeholder secrets, the install and uninstall plans of one
//! host, and the cluster step's scripts (checked by `sh -n`).

use kbz_core::{Component, Resource};
use kbz_rabbitmq::{render, scripts, Layout, Rabbitmq};
use kbz_testkit::snapshot_name as name;

use crate::common::{example_ctx, rabbit_hosts};

#[test]
fn every_rendered_file_of_every_rabbitmq_host() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = rabbit_hosts(&ctx);
    assert_eq!(hosts.len(), 3);
    for h in &hosts {
        for f in render::files(&ctx, h, &l).expect("render") {
            let header = format!("{} mode {:04o} owner {}", f.path, f.mode, f.owner);
            insta::assert_snapshot!(name(&h.hostname, &f.path), f.content, &header);
        }
    }
}

#[test]
fn config_binds_the_private_address_and_lists_every_peer() {
    let ctx = example_ctx();
    let l = Layout::debian();
    for h in rabbit_hosts(&ctx) {
        let conf = render::conf(&ctx, &h, &l).expect("conf");
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        let ip = h.ip.to_string();
        assert!(lines.contains(&format!("listeners.tcp.1 = {ip}:5672").as_str()));
        assert!(lines.contains(&format!("management.tcp.ip = {ip}").as_str()));
        assert!(lines.contains(&format!("prometheus.tcp.ip = {ip}").as_str()));
        assert!(lines.contains(&"prometheus.tcp.port = 15692"));
        assert!(lines.contains(&"cluster_formation.peer_discovery_backend = classic_config"));
        for (i, n) in ["mq1", "mq2", "mq3"].iter().enumerate() {
            let want = format!(
                "cluster_formation.classic_config.nodes.{} = rabbit@{n}",
                i + 1
            );
            assert!(lines.contains(&want.as_str()), "{conf}");
        }
        assert!(!conf.contains("0.0.0.0") && !conf.contains("::"), "{conf}");
        // Only one AMQP listener, and no blank keys left by the template.
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("listeners.")).count(),
            1
        );
        assert!(
            lines.iter().all(|l| l.is_empty() || l.contains(" = ")),
            "{conf}"
        );
        let env = render::env_conf(&h, &l).expect("env");
        assert!(env.contains(&format!("NODENAME=rabbit@{}\n", h.hostname)));
        let o: Vec<String> = ip.split('.').map(String::from).collect();
        assert!(env.contains(&format!(
            "SERVER_ADDITIONAL_ERL_ARGS=\"-kernel inet_dist_use_interface {{{}}}\"",
            o.join(",")
        )));
    }
}

/// One line per resource: what it is, without file contents (snapshotted above).
fn outline(r: &[Resource]) -> String {
    r.iter()
        .map(|x| match x {
            Resource::File {
                path,
                mode,
                owner,
                present: true,
                ..
            } => format!("file {path} {mode:04o} {owner}"),
            Resource::File { path, .. } => format!("absent {path}"),
            Resource::Service {
                name,
                enabled,
                running,
                restart_on,
            } => format!(
                "service {name} enabled={enabled} running={running} restart_on=[{}]",
                restart_on.join(", ")
            ),
            Resource::Command {
                id, script, unless, ..
            } => format!(
                "command {id}\n  script: {}\n  unless: {}",
                script.trim_end().replace('\n', "\n          "),
                unless.as_deref().unwrap_or("-"),
            ),
            Resource::Package { name, present } => format!(
                "package {name} {}",
                if *present { "installed" } else { "purged" }
            ),
            Resource::Directory { path, mode, owner } => format!("dir {path} {mode:04o} {owner}"),
            other => other.id(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn install_and_uninstall_plans_of_one_host() {
    let ctx = example_ctx();
    let h = &rabbit_hosts(&ctx)[0];
    insta::assert_snapshot!(
        name(&h.hostname, "install_resources"),
        outline(&Rabbitmq.desired(&ctx, h).expect("desired"))
    );
    insta::assert_snapshot!(
        name(&h.hostname, "uninstall_resources"),
        outline(&Rabbitmq.uninstall(&ctx, h).expect("uninstall"))
    );
}

#[test]
fn cluster_step_scripts_are_valid_sh_and_carry_no_secret() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = rabbit_hosts(&ctx);
    let h = &hosts[1];
    let nodes: Vec<String> = hosts.iter().map(|x| l.node(x)).collect();
    let all = [
        scripts::observe(&l, h),
        scripts::health(&l, h),
        scripts::running(&l, h),
        scripts::join(&l, h, "rabbit@mq2", "rabbit@mq1"),
        scripts::access_change(&l, h, &["add_user", "app"], true),
        scripts::access_change(
            &l,
            h,
            &["set_permissions", "-p", "app", "app", ".*", ".*", ".*"],
            false,
        ),
        scripts::quorum_critical(&l, h, &nodes, true),
    ];
    kbz_testkit::assert_valid_sh(&all);
    for name in Rabbitmq.secret_names() {
        let s = ctx.secret(&name).expect("secret");
        assert!(all.iter().all(|x| !x.contains(s.expose())), "{name}");
    }
    insta::assert_snapshot!(name(&h.hostname, "cluster_step_scripts"), all.join("\n"));
}
