//! kbz-rabbitmq (module 7): a RabbitMQ cluster (Debian 12's rabbitmq-server 3.10) on the
//! `rabbitmq` hosts, with quorum queues by default in the application vhost and `guest`
//! deleted.
//!
//! # Order of the first start
//! Debian's postinst starts the server as soon as the package is installed, and a node's
//! Erlang cookie and name are fixed by that first start. So the `rabbitmq` user and group
//! are created first (as the postinst would), then the cookie (the generated
//! `rabbitmq_erlang_cookie` secret, 0400 rabbitmq:rabbitmq, identical on every node; the
//! postinst keeps a cookie it finds), rabbitmq-env.conf, rabbitmq.conf and enabled_plugins,
//! and only then the package. The first start therefore already has the cookie, listens on
//! the private address only and tries the classic_config peers.
//!
//! # Cluster
//! Hosts roll one at a time. A node's first start joins the first reachable peer of
//! classic_config; a node that found none (the first host of a fresh install) starts alone.
//! The cluster step then waits until every node runs, joins each node still alone to the
//! largest cluster (one at a time, re-checked on the host right before `stop_app`, `reset`,
//! `join_cluster`, `start_app`), and waits until every node sees every node running (E035).
//! A second cluster of several nodes is never reset by kbz.
//!
//! # Users
//! `guest` is deleted; `kbz_admin` (tag administrator, the `rabbitmq_admin_password`
//! secret) and the `[rabbitmq] app_user` (the `rabbitmq_app_password` secret, full rights
//! on `[rabbitmq] vhost` only) are created. Passwords go through stdin (`add_user`,
//! `change_password`, `authenticate_user` read them there when the argument is left out),
//! never a command line. A re-run checks each password with `authenticate_user` and
//! changes nothing when it works.
//!
//! # Quorum queues
//! RabbitMQ 3.10 stores a vhost's default queue type (`add_vhost --default-queue-type
//! quorum`, the `default_queue_type` vhost metadata) and uses it for a queue declared
//! without `x-queue-type` (the loopback test declares one and finds it a quorum queue).
//! A policy cannot change a queue's type; the default vhost `/` keeps classic queues, so
//! clients must use the application vhost (or send `x-queue-type: quorum`).
//!
//! # Rolling restarts
//! A configuration change restarts one node at a time. Before the first host changes, every
//! running node must pass `rabbitmq-diagnostics check_if_node_is_quorum_critical`; after
//! each host, its node must run and no node may be quorum critical (E036 on timeout), so a
//! restart never takes a quorum queue below its majority.
//!
//! Uninstall stops and disables the service, purges the package and removes kbz's files
//! (the cookie included). The data under /var/lib/rabbitmq/mnesia stays. Operator notes:
//! docs/rabbitmq.md.

pub mod cluster;
pub mod health;
pub mod layout;
pub mod observe;
pub mod render;
pub mod scripts;

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Listen, Probe,
};
use kbz_core::{Context, Host, Resource, Role};

pub use layout::Layout;

/// Secret: the Erlang cookie shared by every node and the CLI tools.
pub const SECRET_COOKIE: &str = "rabbitmq_erlang_cookie";
/// Secret: the password of [`ADMIN_USER`].
pub const SECRET_ADMIN: &str = "rabbitmq_admin_password";
/// Secret: the password of `[rabbitmq] app_user`.
pub const SECRET_APP: &str = "rabbitmq_app_password";
/// kbz's administrator (tag `administrator`).
pub const ADMIN_USER: &str = "kbz_admin";
/// The package.
pub const PACKAGE: &str = "rabbitmq-server";
/// The unit.
pub const SERVICE: &str = "rabbitmq-server";

/// Module 7: RabbitMQ.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rabbitmq;

/// Creates the `rabbitmq` group and user as Debian's postinst does, so the cookie and the
/// config can be owned by them before the package (and its first start) arrive.
fn system_user() -> Resource {
    Resource::Command {
        id: "rabbitmq-system-user".into(),
        script: "set -e\ngetent group rabbitmq >/dev/null || addgroup --system rabbitmq\n\
                 getent passwd rabbitmq >/dev/null || adduser --system --ingroup rabbitmq \
                 --home /var/lib/rabbitmq --no-create-home --gecos 'RabbitMQ messaging server' \
                 --disabled-login rabbitmq\n"
            .into(),
        unless: Some(
            "getent group rabbitmq >/dev/null && getent passwd rabbitmq >/dev/null".into(),
        ),
        creates: None,
        undo: None,
    }
}

#[async_trait]
impl Component for Rabbitmq {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn module(&self) -> u8 {
        7
    }

    fn secret_names(&self) -> Vec<String> {
        vec![SECRET_COOKIE.into(), SECRET_ADMIN.into(), SECRET_APP.into()]
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Rabbitmq)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let l = Layout::debian();
        let mut r = vec![system_user()];
        for d in [layout::CONF_DIR, layout::DATA_DIR] {
            r.push(Resource::Directory {
                path: d.into(),
                mode: 0o755,
                owner: render::RABBITMQ_OWNER.into(),
            });
        }
        for f in render::files(ctx, host, &l)? {
            r.push(Resource::File {
                path: f.path,
                content: f.content.into_bytes(),
                mode: f.mode,
                owner: f.owner,
                present: true,
            });
        }
        r.push(Resource::package(PACKAGE));
        // The cookie is not in restart_on: restarting nodes one at a time with a new cookie
        // would split the cluster (docs/rabbitmq.md: changing it needs a full stop).
        r.push(Resource::service(
            SERVICE,
            &[layout::ENV_CONF, layout::CONF, layout::ENABLED_PLUGINS],
        ));
        Ok(r)
    }

    fn rolling(&self) -> bool {
        true
    }

    async fn roll_order(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<String>, ComponentError> {
        cluster::before_roll(ctx, hosts, &Layout::debian()).await?;
        Ok(hosts.iter().map(|h| h.host.hostname.clone()).collect())
    }

    async fn host_ready(
        &self,
        ctx: &Context,
        host: &HostExec,
        _changed: bool,
    ) -> Result<(), ComponentError> {
        let all: Vec<Host> = render::rabbitmq_hosts(ctx).into_iter().cloned().collect();
        cluster::host_ready(ctx, host, &Layout::debian(), &all).await
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = vec![
            Resource::stopped_service(SERVICE),
            Resource::absent_package(PACKAGE),
        ];
        for f in [
            layout::CONF,
            layout::ENV_CONF,
            layout::ENABLED_PLUGINS,
            layout::COOKIE,
        ] {
            r.push(Resource::absent_file(f));
        }
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
        health::probes(&Layout::debian(), host)
    }

    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        health::checks(ctx, raw, &Layout::debian())
    }

    /// AMQP, management, Prometheus and the Erlang distribution port on the host's address.
    fn listens(&self, _ctx: &Context, host: &Host) -> Vec<Listen> {
        let l = Layout::debian();
        let addrs = [host.ip];
        let owners = ["beam.smp"];
        let mut v = vec![
            Listen::new("RabbitMQ AMQP", l.amqp_port, &addrs, &owners)
                .marker(layout::CONF)
                .auth("password (guest deleted)"),
            Listen::new("RabbitMQ management", l.management_port, &addrs, &owners)
                .marker(layout::CONF)
                .auth("password (HTTP basic)"),
            Listen::new("RabbitMQ Prometheus", l.prometheus_port, &addrs, &owners)
                .marker(layout::CONF)
                .auth("none (metrics only)"),
        ];
        if render::dist_args(host.ip).is_some() {
            v.push(
                Listen::new("RabbitMQ inter-node", l.dist_port, &addrs, &owners)
                    .marker(layout::ENV_CONF)
                    .auth("Erlang cookie"),
            );
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_and_config_come_before_the_package() {
        let ctx = kbz_testkit_free_ctx();
        let h = ctx
            .inventory
            .with_role(Role::Rabbitmq)
            .first()
            .copied()
            .cloned()
            .expect("a rabbitmq host");
        let r = Rabbitmq.desired(&ctx, &h).expect("desired");
        let pos = |id: &str| r.iter().position(|x| x.id() == id).expect(id);
        let pkg = pos("package:rabbitmq-server");
        for f in [
            layout::COOKIE,
            layout::CONF,
            layout::ENV_CONF,
            layout::ENABLED_PLUGINS,
        ] {
            assert!(pos(&format!("file:{f}")) < pkg, "{f}");
        }
        assert!(pos("command:rabbitmq-system-user") < pos(&format!("file:{}", layout::COOKIE)));
        match &r[pos(&format!("file:{}", layout::COOKIE))] {
            Resource::File {
                mode,
                owner,
                content,
                ..
            } => {
                assert_eq!((*mode, owner.as_str()), (0o400, "rabbitmq:rabbitmq"));
                assert_eq!(
                    content.as_slice(),
                    ctx.secret(SECRET_COOKIE)
                        .expect("cookie")
                        .expose()
                        .as_bytes()
                );
            }
            o => panic!("{o:?}"),
        }
    }

    fn kbz_testkit_free_ctx() -> Context {
        let inv = kbz_core::Inventory::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../examples/servers.tsv"
        )))
        .expect("inventory");
        let cfg = kbz_core::Config::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../examples/kbz.toml"
        )))
        .expect("config");
        Context::new(
            inv,
            cfg,
            kbz_core::Secrets::placeholders(Rabbitmq.secret_names()),
        )
    }
}
