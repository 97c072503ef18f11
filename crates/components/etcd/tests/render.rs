//! Integration tests of kbz-etcd: snapshots of every rendered file for the example inventory
//! (`examples/servers.tsv` + `examples/kbz.toml`), and engine runs on fake hosts (`engine`).

#[path = "render/engine.rs"]
mod engine;

use kbz_core::{Component, Config, Context, Inventory, Resource, Secrets};
use kbz_etcd::Etcd;
use std::path::Path;

fn example_context() -> Context {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let inv = Inventory::load(&root.join("examples/servers.tsv")).expect("example inventory");
    let cfg = Config::load(&root.join("examples/kbz.toml")).expect("example config");
    Context::new(inv, cfg, Secrets::placeholders(Etcd.secret_names()))
}

/// Every file resource of a host: a header line with path, mode, owner, then the content.
fn files(resources: &[Resource]) -> String {
    let mut out = String::new();
    for r in resources {
        if let Resource::File {
            path,
            content,
            mode,
            owner,
            present,
        } = r
        {
            out.push_str(&format!(
                "=== {path} mode {mode:04o} {owner} present={present}\n"
            ));
            out.push_str(&String::from_utf8_lossy(content));
        }
    }
    out
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
        let r = Etcd.desired(&ctx, host).expect("desired");
        insta::assert_snapshot!(format!("etcd_files_{}", host.hostname), files(&r));
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
