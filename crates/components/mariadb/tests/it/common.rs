//! Shared fixtures: the example inventory and config with placeholder secrets (and a variant
//! with ProxySQL hosts and a pin), and the gather answers of fresh, running and stopped nodes.

use kbz_core::{Component, Config, Context, Host, Inventory, Role, Secrets};
use kbz_mariadb::Mariadb;

/// The example fleet (`examples/servers.tsv`: mq1-mq3 carry the mariadb role), placeholder
/// secrets.
pub fn example_ctx() -> Context {
    kbz_testkit::example_context(Mariadb.secret_names())
}

/// The example fleet changed by `f`, placeholder secrets.
pub fn ctx_with(f: impl FnOnce(&mut Inventory, &mut Config)) -> Context {
    let mut inv = kbz_testkit::example_inventory();
    let mut cfg = kbz_testkit::example_config();
    f(&mut inv, &mut cfg);
    Context::new(inv, cfg, Secrets::placeholders(Mariadb.secret_names()))
}

/// The example fleet with the proxysql role on lb1 and lb2, and a ProxySQL pin when `pinned`.
pub fn proxysql_ctx_pinned(pinned: bool) -> Context {
    ctx_with(|inv, cfg| {
        for h in inv.hosts.iter_mut() {
            if h.has(Role::Lb) {
                h.roles.insert(Role::Proxysql);
            }
        }
        if pinned {
            cfg.artifacts.insert(
                "proxysql".into(),
                kbz_core::artifact::ArtifactOverride {
                    version: "2.7.1".into(),
                    sha256: "ab".repeat(32),
                    source: Some("file:///srv/kbz/proxysql_{version}-debian12_amd64.deb".into()),
                },
            );
        }
    })
}

/// The example fleet with the proxysql role on lb1 and lb2 and a ProxySQL pin.
pub fn proxysql_ctx() -> Context {
    proxysql_ctx_pinned(true)
}

/// The MariaDB hosts in inventory order.
pub fn mariadb_hosts(ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .with_role(Role::Mariadb)
        .into_iter()
        .cloned()
        .collect()
}

/// The cluster state uuid of the fixtures.
pub const UUID: &str = "9d71433d-ee9d-11f1-b8a3-b77be922693c";

/// A node that never ran Galera and whose server is stopped (after the package's
/// stand-alone server was stopped).
pub fn fresh_gather() -> String {
    "state=inactive\n@@ end\n".into()
}

/// A running member, Synced in a Primary component of `size`.
pub fn synced_gather(size: usize, stale: bool) -> String {
    format!(
        "state=active\ngra_uuid={UUID}\ngra_seqno=-1\ngra_safe=0\nstatus_wsrep_local_state=4\nstatus_wsrep_local_state_comment=Synced\nstatus_wsrep_cluster_size={size}\nstatus_wsrep_cluster_status=Primary\nstatus_wsrep_cluster_state_uuid={UUID}\nstatus_wsrep_last_committed=42\nstatus_wsrep_ready=ON\nstatus_wsrep_on=1\n{}@@ end\n",
        if stale { "stale_config=1\n" } else { "" }
    )
}

/// A stopped member with Galera data (`seqno` -1 after a crash).
pub fn down_gather(seqno: i64, safe: bool) -> String {
    format!(
        "state=failed\ngra_uuid={UUID}\ngra_seqno={seqno}\ngra_safe={}\n@@ end\n",
        u8::from(safe)
    )
}
