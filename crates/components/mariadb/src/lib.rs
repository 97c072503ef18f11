//! kbz-mariadb (module 8): a MariaDB Galera cluster (mariadb-server 10.11, galera-4,
//! mariabackup SST) on the `mariadb` hosts, with a clustercheck HAProxy asks on every node,
//! and the full-cluster recovery automated.
//!
//! # From the package's stand-alone server to a cluster member
//! Debian's postinst starts a stand-alone server (no wsrep) on a fresh datadir. kbz stops it
//! once, by a command guarded on its config file (`mariadb-standalone-stop`), before that
//! file is written, so no server ever runs half-configured. From then on the cluster step,
//! not the engine, starts and stops the server: the engine only keeps the unit enabled (so a
//! rebooted node rejoins by itself). The step bootstraps a fresh cluster on the first
//! inventory host (`galera_new_cluster`), makes the users, and starts the others one at a
//! time (their datadirs are replaced by an SST from a donor), each waited for until Synced.
//!
//! # Invariants
//! 1. Root has no network account: it logs in over the local unix socket only
//!    (unix_socket auth, Debian's default); a `root@'%'` is dropped by the cluster step.
//! 2. Every server binds the host's inventory address; commits are flushed
//!    (`innodb_flush_log_at_trx_commit = 1`).
//! 3. Passwords never reach a command line or SQL text: the SST password sits in the Galera
//!    config (0640 root:mysql), the check user's in its client file (0640 root:mysql), and
//!    accounts are made from `mysql_native_password` hashes sent on stdin.
//! 4. A converged re-run only reads: no file differs, nothing starts or restarts, the users'
//!    session reports no difference (0 changed, 0 cluster changes).
//! 5. kbz bootstraps only when no node runs in a Primary component: a fresh cluster, or
//!    every node down (the node with the highest seqno). Running nodes without a Primary
//!    component are a quorum loss (E036) it reports, not one it forces. Galera's own
//!    `pc.recovery` (on by default) may re-form the Primary component when every member of
//!    the last one restarts together (a power cut with the units enabled); kbz's recovery
//!    is for what it cannot: every node down and staying down.
//!
//! Uninstall stops and disables the server and the clustercheck, purges the packages and
//! removes kbz's files; the data in /var/lib/mysql stays.

pub mod cluster;
pub mod layout;
pub mod observe;
pub mod password;
pub mod proxysql;
pub mod render;
pub mod scripts;
pub mod users;

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Listen, Probe,
};
use kbz_core::shell::quote;
use kbz_core::{Context, Host, Resource, Role};

pub use layout::Layout;

/// Secret: the SST user's password (in the Galera config, for mariabackup on a donor).
pub const SECRET_SST: &str = "mariadb_sst_password";
/// Secret: the application user's password (`[mariadb] app_user`).
pub const SECRET_APP: &str = "mariadb_app_password";
/// Secret: the health-check user's password (the clustercheck HAProxy asks).
pub const SECRET_CHECK: &str = "mariadb_check_password";
/// Secret: ProxySQL's monitor user's password (made only with `proxysql` hosts).
pub const SECRET_MONITOR: &str = "mariadb_monitor_password";
/// The SST user.
pub const SST_USER: &str = "kbz_sst";
/// The health-check user (status only, local socket).
pub const CHECK_USER: &str = "kbz_check";
/// ProxySQL's monitor user.
pub const MONITOR_USER: &str = "kbz_monitor";
/// Packages of a Galera node.
pub const PACKAGES: &[&str] = &["mariadb-server", "galera-4", "mariadb-backup", "socat"];
/// Packages purged by uninstall (the client stays: it is harmless and other tools use it).
pub const UNINSTALLED_PACKAGES: &[&str] = &["mariadb-server", "galera-4", "mariadb-backup"];

/// Module 8: MariaDB Galera (+ ProxySQL on `proxysql` hosts).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mariadb;

fn dir_of(p: &str) -> String {
    std::path::Path::new(p)
        .parent()
        .and_then(|d| d.to_str())
        .unwrap_or("/")
        .to_string()
}

/// The resources of a Galera node.
fn galera_desired(ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
    let l = Layout::debian();
    let mut r: Vec<Resource> = PACKAGES.iter().map(|p| Resource::package(p)).collect();
    // The package's stand-alone server stops before kbz's config exists; never again after.
    r.push(Resource::Command {
        id: "mariadb-standalone-stop".into(),
        script: format!("systemctl stop {}.service", layout::SERVICE),
        unless: Some(format!("[ -e {} ]", quote(layout::GALERA_CNF))),
        creates: None,
        undo: None,
    });
    r.push(Resource::Directory {
        path: dir_of(layout::CLUSTERCHECK),
        mode: 0o755,
        owner: "root:root".into(),
    });
    for f in render::files(ctx, host, &l)? {
        r.push(Resource::File {
            path: f.path,
            content: f.content.into_bytes(),
            mode: f.mode,
            owner: f.owner,
            present: true,
        });
    }
    // Enabled, so a rebooted node rejoins; started and stopped by the cluster step only.
    r.push(Resource::Command {
        id: "mariadb-enable".into(),
        script: format!("systemctl enable {}.service", layout::SERVICE),
        unless: Some(format!(
            "systemctl is-enabled -q {}.service",
            layout::SERVICE
        )),
        creates: None,
        undo: None,
    });
    // Debian enables mariadb.socket, which listens on *:3306 at boot: it would take the port
    // from this node's server and the VIP's front from HAProxy (both failed to bind after a
    // power cut on the lab), and socket activation would start a server outside the
    // cluster step's order. Masked (before or after the package installs, which enables
    // it), so nothing can start it.
    r.push(Resource::Command {
        id: "mariadb-socket-mask".into(),
        script: format!("systemctl mask --now {}", layout::SOCKET_UNIT),
        unless: Some(format!(
            "[ \"$(systemctl is-enabled {} 2>/dev/null)\" = masked ]",
            layout::SOCKET_UNIT
        )),
        creates: None,
        undo: Some(format!("systemctl unmask {}", layout::SOCKET_UNIT)),
    });
    r.push(Resource::Command {
        id: "mariadb-clustercheck-reload".into(),
        script: "systemctl daemon-reload".into(),
        unless: Some(format!(
            "systemctl show -p ExecStart --value {}.service | grep -qF {}",
            layout::CHECK_SERVICE,
            quote(&format!("argv[]={} ;", render::check_exec_start(host, &l)))
        )),
        creates: None,
        undo: Some("systemctl daemon-reload".into()),
    });
    r.push(Resource::service(
        layout::CHECK_SERVICE,
        &[layout::CHECK_UNIT, layout::CLUSTERCHECK],
    ));
    Ok(r)
}

#[async_trait]
impl Component for Mariadb {
    fn name(&self) -> &'static str {
        "mariadb"
    }

    fn module(&self) -> u8 {
        8
    }

    fn secret_names(&self) -> Vec<String> {
        [
            SECRET_SST,
            SECRET_APP,
            SECRET_CHECK,
            SECRET_MONITOR,
            proxysql::SECRET_ADMIN,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Mariadb) || host.has(Role::Proxysql)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = Vec::new();
        if host.has(Role::Mariadb) {
            r.extend(galera_desired(ctx, host)?);
        }
        if host.has(Role::Proxysql) {
            r.extend(proxysql::desired(ctx, host)?);
        }
        Ok(r)
    }

    fn uninstall(&self, _ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = Vec::new();
        if host.has(Role::Proxysql) {
            r.extend(proxysql::uninstall(_ctx)?);
        }
        if !host.has(Role::Mariadb) {
            return Ok(r);
        }
        r.push(Resource::stopped_service(layout::CHECK_SERVICE));
        r.push(Resource::stopped_service(layout::SERVICE));
        r.push(Resource::Command {
            id: "mariadb-socket-unmask".into(),
            script: format!("systemctl unmask {}", layout::SOCKET_UNIT),
            unless: Some(format!(
                "[ ! -L /etc/systemd/system/{} ]",
                layout::SOCKET_UNIT
            )),
            creates: None,
            undo: Some(format!("systemctl mask {}", layout::SOCKET_UNIT)),
        });
        for p in UNINSTALLED_PACKAGES {
            r.push(Resource::absent_package(p));
        }
        for f in [
            layout::GALERA_CNF,
            layout::CHECK_CNF,
            layout::CLUSTERCHECK,
            layout::CHECK_UNIT,
        ] {
            r.push(Resource::absent_file(f));
        }
        r.push(Resource::Command {
            id: "mariadb-uninstall-daemon-reload".into(),
            script: "systemctl daemon-reload".into(),
            unless: Some(format!(
                "! systemctl cat {}.service >/dev/null 2>&1",
                layout::CHECK_SERVICE
            )),
            creates: None,
            undo: None,
        });
        Ok(r)
    }

    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        cluster::converge(ctx, hosts, &Layout::debian()).await
    }

    fn health_probes(&self, _ctx: &Context, host: &Host) -> Vec<Probe> {
        if !host.has(Role::Mariadb) {
            return Vec::new();
        }
        vec![Probe::new(
            "gather",
            scripts::gather(&Layout::debian(), host),
        )]
    }

    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        cluster::health_checks(ctx, raw)
    }

    /// The server (SQL and Galera replication) and the clustercheck on the host's address;
    /// ProxySQL's ports on `proxysql` hosts.
    fn listens(&self, _ctx: &Context, host: &Host) -> Vec<Listen> {
        let l = Layout::debian();
        let mut out = Vec::new();
        if host.has(Role::Mariadb) {
            let a = [host.ip];
            let owners = ["mariadbd", "mysqld"];
            out.push(
                Listen::new("MariaDB", l.port, &a, &owners)
                    .marker(layout::GALERA_CNF)
                    .auth("password (root only over the local socket)"),
            );
            out.push(
                Listen::new("Galera replication", l.galera_port, &a, &owners)
                    .marker(layout::GALERA_CNF)
                    .auth("none (private network)"),
            );
            out.push(
                Listen::new("Galera clustercheck", l.check_port, &a, &["socat"])
                    .marker(layout::CHECK_UNIT)
                    .auth("none (read-only status)"),
            );
        }
        if host.has(Role::Proxysql) {
            out.extend(proxysql::listens(host));
        }
        out
    }
}
