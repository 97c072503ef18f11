//! Snapshots of every file kbz renders for Redis and Sentinel on the example inventory
//! (`examples/servers.tsv`: db1-db3 carry the redis role; `examples/kbz.toml`), with
//! placeholder secrets, plus the resource plan of one host for install and uninstall.

use kbz_core::{Component, Resource};
use kbz_redis::{render, scripts, Layout, Redis};
use kbz_testkit::snapshot_name as name;

use crate::common::{example_ctx, redis_hosts};

#[test]
fn every_rendered_file_of_every_redis_host() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = redis_hosts(&ctx);
    assert_eq!(hosts.len(), 3);
    for h in &hosts {
        for f in render::files(&ctx, h, &l).expect("render") {
            let header = format!("{} mode {:04o} owner {}", f.path, f.mode, f.owner);
            insta::assert_snapshot!(name(&h.hostname, &f.path), f.content, &header);
        }
        insta::assert_snapshot!(
            name(&h.hostname, "/etc/redis/redis.conf"),
            render::redis_main_stub(&l, h).expect("stub"),
            "/etc/redis/redis.conf, written once (guarded command), mode 0640 owner redis:redis"
        );
        insta::assert_snapshot!(
            name(&h.hostname, "/etc/redis/sentinel.conf"),
            render::sentinel_main_stub(&l, h).expect("stub"),
            "/etc/redis/sentinel.conf, written once (guarded command), mode 0640 owner redis:redis"
        );
    }
}

/// One line per resource: what it is, without file contents (those are snapshotted above).
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
                id,
                script,
                unless,
                undo,
                ..
            } => format!(
                "command {id}\n  script: {}\n  unless: {}\n  undo: {}",
                script.trim_end().replace('\n', "\n          "),
                unless.as_deref().unwrap_or("-"),
                undo.as_deref().unwrap_or("-")
            ),
            Resource::Package { name, present } => {
                format!(
                    "package {name} {}",
                    if *present { "installed" } else { "purged" }
                )
            }
            Resource::Directory { path, mode, owner } => format!("dir {path} {mode:04o} {owner}"),
            other => format!(
                "{} {}",
                other.id(),
                serde_json::to_string(other).unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn install_and_uninstall_plans_of_one_host() {
    let ctx = example_ctx();
    let h = &redis_hosts(&ctx)[0];
    insta::assert_snapshot!(
        "db1__install_resources",
        outline(&Redis.desired(&ctx, h).expect("desired"))
    );
    insta::assert_snapshot!(
        "db1__uninstall_resources",
        outline(&Redis.uninstall(&ctx, h).expect("uninstall"))
    );
}

#[test]
fn cluster_step_scripts() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = redis_hosts(&ctx);
    let ips: Vec<std::net::IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let params = kbz_redis::sentinel_params(hosts.len());
    let h = &hosts[1];
    let all = [
        scripts::gather(&l, h),
        scripts::ping(&l, h),
        scripts::replicaof(&l, h, ips[0]),
        scripts::monitor(&l, h, ips[0], &params),
        scripts::sentinel_set(&l, h, &[("failover-timeout", 10000)], true),
        scripts::wait_replication(&l, &hosts[0], ips[0], &ips[1..]),
        scripts::wait_sentinels(&l, &hosts[0], ips[0], &ips),
    ]
    .join("\n");
    insta::assert_snapshot!("db2__cluster_step_scripts", all);
}
