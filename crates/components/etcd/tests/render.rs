//! Integration tests of kbz-etcd: snapshots of every rendered file for the example inventory
//! (`examples/servers.tsv` + `examples/kbz.toml`), and engine runs on fake hosts (`engine`).

#[path = "render/engine.rs"]
mod engine;

use kbz_core::{Component, Context, Resource};
use kbz_etcd::Etcd;
use kbz_testkit::rendered_files;

fn example_context() -> Context {
    kbz_testkit::example_context(Etcd.secret_names())
}

#[test]
fn rendered_files_for_the_example_inventory() {
    let ctx = example_context();
    let members: Vec<_> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| Etcd.applies_to(h))
        .cloned()
        .collect();
    assert_eq!(
        members
            .iter()
            .map(|h| h.hostname.as_str())
            .collect::<Vec<_>>(),
        ["db1", "db2", "db3"]
    );
    for host in &members {
        insta::assert_snapshot!(
            format!("etcd_files_{}", host.hostname),
            rendered_files(&Etcd, &ctx, host)
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
    assert!(removed.iter().any(|r| matches!(
        r,
        Resource::Package { name, present: false } if name == "etcd-server"
    )));
}
