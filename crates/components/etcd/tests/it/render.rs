//! Snapshots of every file rendered for the example inventory (`examples/servers.tsv` +
//! `examples/kbz.toml`, also with `[security] tls`), and the uninstall plan.

use kbz_core::{Component, Context, Resource};
use kbz_etcd::Etcd;
use kbz_testkit::{hostnames, members, rendered_files, snapshot_name};

fn example_context() -> Context {
    kbz_testkit::example_context(Etcd.secret_names())
}

#[test]
fn rendered_files_for_the_example_inventory() {
    let ctx = example_context();
    let members = members(&Etcd, &ctx);
    assert_eq!(hostnames(&members), ["db1", "db2", "db3"]);
    for host in &members {
        insta::assert_snapshot!(
            snapshot_name(&host.hostname, "files"),
            rendered_files(&Etcd, &ctx, host)
        );
    }
}

#[test]
fn rendered_files_with_tls() {
    let ctx = kbz_testkit::with_tls(&example_context());
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let files = rendered_files(&Etcd, &ctx, &host);
    assert!(files.contains("=== /etc/etcd/kbz-tls/member.key mode 0600 etcd:etcd present=true"));
    let (k, v) = kbz_testkit::PEM_FILTER;
    insta::with_settings!({ filters => vec![(k, v)] }, {
        insta::assert_snapshot!("db1__files_tls", files);
    });
    // Every etcdctl call presents the member certificate to an https endpoint.
    for script in [Etcd::health_script(&ctx), Etcd::member_list_script(&ctx)] {
        assert!(
            script.contains("--endpoints=https://192.0.2.21:2379,"),
            "{script}"
        );
        assert!(script.contains(" --cacert=/etc/etcd/kbz-tls/ca.crt --cert=/etc/etcd/kbz-tls/member.crt --key=/etc/etcd/kbz-tls/member.key "), "{script}");
    }
    for p in Etcd.health_probes(&ctx, &host) {
        assert!(
            p.script.contains("https://192.0.2.21:2379 --cacert="),
            "{}",
            p.script
        );
    }
}

#[test]
fn uninstall_removes_what_install_wrote() {
    let ctx = example_context();
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let installed: Vec<String> = Etcd
        .desired(&ctx, &host)
        .expect("desired")
        .iter()
        .filter_map(|r| match r {
            Resource::File { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let removed = Etcd.uninstall(&ctx, &host).expect("uninstall");
    for path in installed {
        assert!(
            removed.contains(&Resource::absent_file(&path)),
            "{path} is not removed by uninstall"
        );
    }
    assert!(removed.iter().any(|r| matches!(
        r,
        Resource::Service { name, enabled: false, running: false, .. } if name == "etcd"
    )));
    assert!(removed.contains(&Resource::absent_package("etcd-server")));
}
