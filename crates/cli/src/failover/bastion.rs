//! kbz-failover behind a bastion: with `[ssh] jump_host` set, the controller does not reach
//! the fleet's service ports itself, so every address its workload and checks open (the
//! PostgreSQL VIP and each member's PostgreSQL, the Redis VIP and each member's Redis and
//! Sentinel, each host's SSH port for the heal's up-check) gets a [`Tunnel`] through the jump
//! host, and the clients connect through the [`Routes`] that map each address to its
//! tunnel's local end. Without a jump host nothing is opened and every client connects
//! directly.

use kbz_core::net::Routes;
use kbz_core::{Context, Role};
use kbz_errors::HasCode;
use kbz_exec::ssh::SshOptions;
use kbz_exec::Tunnel;
use std::net::IpAddr;

use crate::{exit, Failure};

/// The tunnels of one run and the routes through them; dropping it closes them.
#[derive(Debug)]
pub struct Bastion {
    /// The jump host, `user@host:port`.
    pub jump: String,
    /// Every tunneled address to its tunnel's local end.
    pub routes: Routes,
    tunnels: Vec<Tunnel>,
}

impl Bastion {
    /// How many tunnels are open.
    pub fn tunnels(&self) -> usize {
        self.tunnels.len()
    }
}

/// Every address the run's own connections open, each once, in this order: the PostgreSQL
/// VIP and each postgres host's PostgreSQL (when `[vips] postgres` is set and the inventory
/// has postgres hosts), the Redis VIP and each redis host's Redis and Sentinel (when
/// `[vips] redis` is set and it has redis hosts), the Kubernetes API VIP (when `[vips]
/// k8s_api` is set and it has k8s-master hosts), the MariaDB VIP and each mariadb host's
/// MariaDB (when `[vips] mariadb` is set and it has mariadb hosts), the RabbitMQ VIP and each
/// rabbitmq host's AMQP port (when `[vips] rabbitmq` is set and it has rabbitmq hosts), then
/// the SSH port of every postgres, redis, k8s-master, mariadb, rabbitmq and lb host.
pub fn addresses(ctx: &Context) -> Vec<(IpAddr, u16)> {
    let hosts = |role: Role| {
        ctx.inventory
            .hosts
            .iter()
            .filter(move |h| h.roles.contains(&role))
    };
    let mut out: Vec<(IpAddr, u16)> = Vec::new();
    let mut add = |ip: IpAddr, port: u16| {
        if !out.contains(&(ip, port)) {
            out.push((ip, port));
        }
    };
    if let Some(vip) = ctx.config.vips.get("postgres").copied() {
        if hosts(Role::Postgres).next().is_some() {
            add(vip, kbz_postgres::PG_PORT);
            for h in hosts(Role::Postgres) {
                add(h.ip, kbz_postgres::PG_PORT);
            }
        }
    }
    if let Some(vip) = ctx.config.vips.get("redis").copied() {
        if hosts(Role::Redis).next().is_some() {
            let layout = kbz_redis::Layout::debian();
            add(vip, kbz_haproxy::REDIS_PORT);
            for h in hosts(Role::Redis) {
                add(h.ip, layout.redis_port);
                add(h.ip, layout.sentinel_port);
            }
        }
    }
    if let Some(vip) = ctx.config.vips.get("k8s_api").copied() {
        if hosts(Role::K8sMaster).next().is_some() {
            add(vip, kbz_kubernetes::API_PORT);
        }
    }
    if let Some(vip) = ctx.config.vips.get("mariadb").copied() {
        if hosts(Role::Mariadb).next().is_some() {
            add(vip, kbz_haproxy::MARIADB_PORT);
            for h in hosts(Role::Mariadb) {
                add(h.ip, kbz_haproxy::MARIADB_PORT);
            }
        }
    }
    if let Some(vip) = ctx.config.vips.get("rabbitmq").copied() {
        if hosts(Role::Rabbitmq).next().is_some() {
            add(vip, kbz_haproxy::AMQP_PORT);
            for h in hosts(Role::Rabbitmq) {
                add(h.ip, kbz_haproxy::AMQP_PORT);
            }
        }
    }
    for role in [
        Role::Postgres,
        Role::Redis,
        Role::K8sMaster,
        Role::Mariadb,
        Role::Rabbitmq,
        Role::Lb,
    ] {
        for h in hosts(role) {
            add(h.ip, h.ssh_port);
        }
    }
    out
}

/// Opens one tunnel per address through `opts.jump`; `None` without a jump host. A bastion
/// that cannot be reached, trusted or authenticated to, or that does not forward to an
/// address, fails the run before anything is injected, with the SSH error's code (exit 3).
pub fn open(opts: &SshOptions, addrs: &[(IpAddr, u16)]) -> Result<Option<Bastion>, Failure> {
    let Some(jump) = &opts.jump else {
        return Ok(None);
    };
    let mut routes = Routes::direct();
    let mut tunnels = Vec::with_capacity(addrs.len());
    for &(ip, port) in addrs {
        let t = Tunnel::open(opts, &ip.to_string(), port)
            .map_err(|e| Failure::new(e.to_diagnostic(), exit::UNREACHABLE))?;
        routes.insert(ip, port, t.local_addr());
        tunnels.push(t);
    }
    Ok(Some(Bastion {
        jump: jump.to_string(),
        routes,
        tunnels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_address_and_ssh_port_once_and_only_for_configured_services() {
        let ctx = kbz_testkit::example_context(Vec::<String>::new());
        let addrs = addresses(&ctx);
        let pg_vip = ctx.config.vips["postgres"];
        let redis_vip = ctx.config.vips["redis"];
        assert_eq!(addrs[0], (pg_vip, 5432));
        assert!(addrs.contains(&(redis_vip, 6379)), "{addrs:?}");
        let k8s_vip = ctx.config.vips["k8s_api"];
        assert!(addrs.contains(&(k8s_vip, 6443)), "{addrs:?}");
        let mq_vip = ctx.config.vips["rabbitmq"];
        assert!(addrs.contains(&(mq_vip, 5672)), "{addrs:?}");
        for h in &ctx.inventory.hosts {
            let has = |r: Role| h.roles.contains(&r);
            assert_eq!(addrs.contains(&(h.ip, 5432)), has(Role::Postgres), "{h:?}");
            assert_eq!(addrs.contains(&(h.ip, 6379)), has(Role::Redis), "{h:?}");
            assert_eq!(addrs.contains(&(h.ip, 26379)), has(Role::Redis), "{h:?}");
            let galera = ctx.config.vips.contains_key("mariadb") && has(Role::Mariadb);
            assert_eq!(addrs.contains(&(h.ip, 3306)), galera, "{h:?}");
            assert_eq!(addrs.contains(&(h.ip, 5672)), has(Role::Rabbitmq), "{h:?}");
            assert_eq!(
                addrs.contains(&(h.ip, h.ssh_port)),
                has(Role::Postgres)
                    || has(Role::Redis)
                    || has(Role::K8sMaster)
                    || has(Role::Mariadb)
                    || has(Role::Rabbitmq)
                    || has(Role::Lb),
                "{h:?}"
            );
        }
        let mut unique = addrs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), addrs.len(), "an address twice: {addrs:?}");

        // Without [vips] redis: nothing of Redis but the hosts' SSH ports.
        let mut no_redis = ctx.clone();
        let mut cfg = (*no_redis.config).clone();
        cfg.vips.remove("redis");
        no_redis.config = std::sync::Arc::new(cfg);
        let addrs = addresses(&no_redis);
        assert!(
            !addrs.iter().any(|a| a.1 == 6379 || a.1 == 26379),
            "{addrs:?}"
        );
        assert!(addrs.contains(&(pg_vip, 5432)));
    }

    #[test]
    fn without_a_jump_host_nothing_is_opened() {
        let opts = SshOptions::new("/nonexistent/known_hosts");
        let addrs = [("192.0.2.1".parse().expect("ip"), 5432)];
        assert!(open(&opts, &addrs).expect("no bastion").is_none());
    }
}
