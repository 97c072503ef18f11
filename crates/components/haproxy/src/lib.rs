//! kbz-haproxy (module 3): HAProxy on the `lb` hosts, with fronts on the keepalived VIPs.
//!
//! - PostgreSQL primary on `<vips.postgres>:5432` and replicas on `<vips.postgres>:5433`,
//!   chosen by Patroni's REST API (`GET /primary`, `GET /replica` on port 8008, expecting
//!   200). Patroni's `restapi.authentication` protects only the unsafe endpoints (PUT, POST,
//!   PATCH, DELETE); GET endpoints such as `/primary` and `/replica` stay open without TLS
//!   client certificates, so these checks need no credentials. If the postgres component
//!   ever sets `restapi.verify_client: required`, these checks must present a certificate.
//! - Redis master on `<vips.redis>:6379`: a tcp-check that authenticates, pings and expects
//!   `role:master`. The Redis password therefore sits in haproxy.cfg, which is 0640
//!   root:haproxy.
//! - The Kubernetes API on `<vips.k8s_api>:6443` (module 10): every `k8s-master` host whose
//!   API server answers `GET /readyz` with 200 over TLS; TCP passes through, so clients
//!   verify the cluster certificate (the VIP is in its SANs).
//! - A stats page with basic auth on the host's private address, port 8404; `kbz-health`
//!   reads its CSV and reports each backend (E040).
//!
//! A front exists only for a VIP that is configured and whose role has hosts. Every server is
//! checked each second and marked down after 2 failures (up after 2 successes), and its
//! sessions are cut when it goes down, so clients reconnect to the new primary or master
//! within about 2 s of Patroni or Sentinel promoting it. A changed haproxy.cfg restarts
//! HAProxy (the engine has no reload), which drops the sessions passing through that host.

mod fronts;
mod health;
mod stats;

pub use fronts::{escape, fronts, render_config, Expect, Front};
pub use stats::{parse_stats_csv, verdict, ServerState};

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Listen, Probe,
};
use kbz_core::net::http_url;
use kbz_core::{Context, Host, Resource, Role};
use std::time::Duration;

/// The HAProxy configuration file.
pub const CONFIG_PATH: &str = "/etc/haproxy/haproxy.cfg";
/// Package and service name.
pub const SERVICE: &str = "haproxy";
/// Stats page port, on each lb host's private address.
pub const STATS_PORT: u16 = 8404;
/// Stats page user.
pub const STATS_USER: &str = "admin";
/// The secret holding the stats page password.
pub const STATS_SECRET: &str = "haproxy_stats_password";
/// The Redis password (owned by the redis component; the master check authenticates).
pub const REDIS_SECRET: &str = "redis_password";
/// PostgreSQL primary port on the VIP (and the servers' port).
pub const POSTGRES_PORT: u16 = 5432;
/// PostgreSQL replicas port on the VIP.
pub const POSTGRES_REPLICAS_PORT: u16 = 5433;
/// Patroni REST API port on the PostgreSQL hosts.
pub const PATRONI_REST_PORT: u16 = 8008;
/// Redis port on the VIP and the servers.
pub const REDIS_PORT: u16 = 6379;
/// RabbitMQ's AMQP port on the VIP and the nodes (module 7), fronted on `[vips] rabbitmq`.
pub const AMQP_PORT: u16 = 5672;
/// MariaDB's port on the VIP and the Galera nodes (module 8), fronted on `[vips] mariadb`.
pub const MARIADB_PORT: u16 = 3306;
/// The Galera nodes' clustercheck port (HTTP 200 only on a Synced node, kbz-mariadb).
pub const MARIADB_CHECK_PORT: u16 = 9200;
/// The Kubernetes API port (module 10), fronted on `[vips] k8s_api`.
pub const K8S_API_PORT: u16 = 6443;

/// Module 3: HAProxy on the `lb` hosts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Haproxy;

/// The stats page URL of one lb host (CSV export).
pub fn stats_url(host: &Host) -> String {
    format!("{}/stats;csv", http_url(host.ip, STATS_PORT))
}

/// Passes once HAProxy is active and its stats page answers (401 without credentials).
fn ready_script(host: &Host) -> String {
    format!(
        "systemctl is-active --quiet haproxy && [ \"$(curl -gs -o /dev/null -w '%{{http_code}}' \
         --max-time 2 '{}/stats')\" = 401 ]",
        http_url(host.ip, STATS_PORT)
    )
}

#[async_trait]
impl Component for Haproxy {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    fn module(&self) -> u8 {
        3
    }

    fn secret_names(&self) -> Vec<String> {
        vec![STATS_SECRET.to_string(), REDIS_SECRET.to_string()]
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Lb)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let cfg = render_config(ctx, host)?;
        Ok(vec![
            // The package first: it creates the haproxy group that owns the config.
            Resource::package(SERVICE),
            Resource::File {
                path: CONFIG_PATH.into(),
                content: cfg.into_bytes(),
                mode: 0o640,
                owner: "root:haproxy".into(),
                present: true,
            },
            Resource::service(SERVICE, &[CONFIG_PATH]),
        ])
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        Ok(vec![
            Resource::stopped_service(SERVICE),
            Resource::absent_package(SERVICE),
            Resource::absent_file(CONFIG_PATH),
        ])
    }

    /// Waits until HAProxy runs and its stats page answers on every lb host (E031). The
    /// backends are not required to be up: PostgreSQL and Redis come in later modules.
    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        let timeout = Duration::from_secs(ctx.config.timeouts.readiness);
        let mut set = tokio::task::JoinSet::new();
        for h in hosts.iter().cloned() {
            set.spawn(async move {
                kbz_core::wait::until_ok(
                    h.exec.as_ref(),
                    &ready_script(&h.host),
                    "HAProxy and its stats page on port 8404",
                    timeout,
                    Duration::from_secs(1),
                )
                .await
                .map(|_| ())
            });
        }
        let mut first_err = None;
        while let Some(j) = set.join_next().await {
            let r = j.map_err(|e| ComponentError::Bootstrap {
                component: "haproxy".into(),
                reason: format!("readiness task failed: {e}"),
            });
            if let Err(e) | Ok(Err(e)) = r {
                first_err.get_or_insert(e);
            }
        }
        // Read-only: waiting changes nothing on the cluster.
        first_err.map_or(Ok(Vec::new()), Err)
    }

    fn health_probes(&self, _ctx: &Context, host: &Host) -> Vec<Probe> {
        health::probes(host)
    }

    /// Per lb host: the stats page answers, and each front's backend has the servers it
    /// needs up (exactly one primary or master, at least one replica).
    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        health::checks(ctx, raw)
    }

    /// The stats page on the host's address, and one front per configured VIP
    /// ([`fronts`]), bound with `ip_nonlocal_bind` whether or not the host holds the VIP.
    fn listens(&self, ctx: &Context, host: &Host) -> Vec<Listen> {
        let mut out = vec![
            Listen::new("HAProxy stats", STATS_PORT, &[host.ip], &["haproxy"])
                .marker(CONFIG_PATH)
                .auth("HTTP basic auth (admin)"),
        ];
        for f in fronts(ctx) {
            let (service, auth) = match f.backend {
                "postgres_primary" => ("PostgreSQL primary", "SCRAM-SHA-256 (PostgreSQL's)"),
                "postgres_replicas" => (
                    "PostgreSQL replicas (read-only)",
                    "SCRAM-SHA-256 (PostgreSQL's)",
                ),
                "redis_master" => ("Redis master", "Redis password"),
                "k8s_api" => ("Kubernetes API", "client certificates and tokens"),
                other => (other, "passed through"),
            };
            out.push(
                Listen::new(service, f.port, &[f.vip], &["haproxy"])
                    .marker(CONFIG_PATH)
                    .via("HAProxy")
                    .auth(auth),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Secrets;
    use std::sync::Arc;

    fn example() -> Context {
        kbz_testkit::example_context(Haproxy.secret_names())
    }

    fn cfg(ctx: &Context, host: &str) -> String {
        let h = ctx.inventory.host(host).expect("host");
        render_config(ctx, h).expect("render")
    }

    #[test]
    fn fronts_for_the_example() {
        let ctx = example();
        let f = fronts(&ctx);
        let names: Vec<&str> = f.iter().map(|f| f.backend).collect();
        assert_eq!(
            names,
            [
                "postgres_primary",
                "postgres_replicas",
                "redis_master",
                "rabbitmq",
                "mariadb",
                "k8s_api"
            ]
        );
        let rabbit = &f[3];
        assert_eq!(
            (rabbit.vip_key, rabbit.port, rabbit.server_port),
            ("rabbitmq", 5672, 5672)
        );
        assert_eq!(rabbit.servers.len(), 3);
        let galera = &f[4];
        assert_eq!(
            (galera.vip_key, galera.port, galera.server_port),
            ("mariadb", 3306, 3306)
        );
        let k8s = &f[5];
        assert_eq!((k8s.port, k8s.server_port), (6443, 6443));
        assert_eq!(k8s.servers.len(), 3);
        let servers: Vec<&str> = f[0].servers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(servers, ["db1", "db2", "db3"]);
        assert_eq!((f[1].port, f[1].server_port), (5433, 5432));
    }

    #[test]
    fn only_configured_vips_with_hosts_get_fronts() {
        let mut ctx = example();
        let mut cfg = (*ctx.config).clone();
        cfg.vips.remove("redis");
        ctx.config = Arc::new(cfg);
        let c = self::cfg(&ctx, "lb1");
        assert!(c.contains("backend postgres_primary"), "{c}");
        assert!(!c.contains("redis"), "{c}");
        assert!(!c.contains("redis_password-PLACEHOLDER"), "{c}");

        // A VIP whose role has no hosts gets no front.
        let mut ctx = example();
        let mut inv = (*ctx.inventory).clone();
        for h in &mut inv.hosts {
            h.roles.remove(&Role::Postgres);
        }
        ctx.inventory = Arc::new(inv);
        let c = self::cfg(&ctx, "lb1");
        assert!(!c.contains("postgres"), "{c}");
        assert!(c.contains("backend redis_master"), "{c}");
    }

    #[test]
    fn rabbitmq_serves_every_node_that_answers_amqp() {
        let c = cfg(&example(), "lb1");
        assert!(
            c.contains("frontend fe_rabbitmq\n    bind 192.0.2.102:5672\n"),
            "{c}"
        );
        for n in ["mq1 192.0.2.31", "mq2 192.0.2.32", "mq3 192.0.2.33"] {
            assert!(c.contains(&format!("    server {n}:5672 check\n")), "{c}");
        }
        let backend = c.split("backend rabbitmq\n").nth(1).expect("backend");
        let backend = backend.split("\n\n").next().expect("block");
        // A plain TCP connect check: no AMQP bytes (RabbitMQ would warn about each check).
        for word in ["backup", "tcp-check", "httpchk"] {
            assert!(!backend.contains(word), "{backend}");
        }
    }

    #[test]
    fn mariadb_has_one_writer_checked_by_the_clustercheck() {
        let c = cfg(&example(), "lb1");
        assert!(
            c.contains("frontend fe_mariadb\n    bind 192.0.2.103:3306\n"),
            "{c}"
        );
        assert!(
            c.contains("    server mq1 192.0.2.31:3306 check port 9200 on-marked-up shutdown-backup-sessions\n"),
            "{c}"
        );
        for n in ["mq2 192.0.2.32", "mq3 192.0.2.33"] {
            assert!(
                c.contains(&format!("    server {n}:3306 check port 9200 backup\n")),
                "{c}"
            );
        }
        // Without `allbackups`, only one backup serves at a time.
        assert!(!c.contains("allbackups"), "{c}");
    }

    #[test]
    fn stats_bind_the_private_address_with_auth() {
        let ctx = example();
        let c = cfg(&ctx, "lb2");
        assert!(c.contains("    bind 192.0.2.12:8404\n"), "{c}");
        assert!(!c.contains("0.0.0.0"), "{c}");
        assert!(
            c.contains("stats auth admin:haproxy_stats_password-PLACEHOLDER\n"),
            "{c}"
        );
    }

    #[test]
    fn postgres_checks_patroni_rest() {
        let c = cfg(&example(), "lb1");
        assert!(c.contains("bind 192.0.2.100:5432\n"), "{c}");
        assert!(c.contains("bind 192.0.2.100:5433\n"), "{c}");
        assert!(c.contains("http-check send meth GET uri /primary\n"), "{c}");
        assert!(c.contains("http-check send meth GET uri /replica\n"), "{c}");
        assert_eq!(c.matches("http-check expect status 200\n").count(), 4);
        assert!(
            c.contains("frontend fe_k8s_api\n    bind 192.0.2.104:6443\n"),
            "{c}"
        );
        assert!(
            c.contains("    server k8s-m2 192.0.2.42:6443 check\n"),
            "{c}"
        );
        assert_eq!(
            c.matches("server db2 192.0.2.22:5432 check port 8008\n")
                .count(),
            2,
            "{c}"
        );
        assert_eq!(
            c.matches("default-server inter 1s fastinter 250ms downinter 250ms fall 2 rise 1 on-marked-down shutdown-sessions\n")
                .count(),
            3
        );
    }

    #[test]
    fn redis_check_authenticates_and_wants_the_master() {
        let c = cfg(&example(), "lb1");
        let want = "    tcp-check send AUTH\\ redis_password-PLACEHOLDER\\r\\n
    tcp-check expect string +OK
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
";
        assert!(c.contains(want), "{c}");
        assert!(c.contains("bind 192.0.2.101:6379\n"), "{c}");
        assert!(c.contains("server db3 192.0.2.23:6379 check\n"), "{c}");
    }

    #[test]
    fn secrets_are_escaped_for_haproxy() {
        assert_eq!(escape("abc123").as_deref(), Some("abc123"));
        assert_eq!(escape("a b#c\\d\"").as_deref(), Some("a\\ b\\#c\\\\d\\\""));
        assert_eq!(escape("a\nb"), None);
        let mut ctx = example();
        let mut s = Secrets::placeholders(Haproxy.secret_names());
        s.set(REDIS_SECRET, kbz_core::Secret::new("p w"));
        ctx.secrets = Arc::new(s);
        assert!(cfg(&ctx, "lb1").contains("tcp-check send AUTH\\ p\\ w\\r\\n"));
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let v6 = Host::new("lb1", "2001:db8::1".parse().expect("ip"), &[Role::Lb]);
        assert_eq!(stats_url(&v6), "http://[2001:db8::1]:8404/stats;csv");
        assert!(ready_script(&v6).contains("'http://[2001:db8::1]:8404/stats'"));
        let v4 = Host::new("lb1", "192.0.2.1".parse().expect("ip"), &[Role::Lb]);
        assert_eq!(stats_url(&v4), "http://192.0.2.1:8404/stats;csv");
    }

    #[test]
    fn resources_and_uninstall() {
        let ctx = example();
        let lb1 = ctx.inventory.host("lb1").expect("lb1").clone();
        let r = Haproxy.desired(&ctx, &lb1).expect("desired");
        let ids: Vec<String> = r.iter().map(Resource::id).collect();
        assert_eq!(
            ids,
            [
                "package:haproxy",
                "file:/etc/haproxy/haproxy.cfg",
                "service:haproxy"
            ]
        );
        assert!(
            matches!(&r[1], Resource::File { mode: 0o640, owner, .. } if owner == "root:haproxy")
        );
        assert_eq!(r[2], Resource::service("haproxy", &[CONFIG_PATH]));
        let u = Haproxy.uninstall(&ctx, &lb1).expect("uninstall");
        assert_eq!(u.len(), 3);
        assert!(u.contains(&Resource::absent_file(CONFIG_PATH)));
        assert!(!Haproxy.applies_to(ctx.inventory.host("db1").expect("db1")));
    }

    #[test]
    fn stats_password_stays_off_the_command_line() {
        let ctx = example();
        let lb1 = ctx.inventory.host("lb1").expect("lb1").clone();
        let probe = &Haproxy.health_probes(&ctx, &lb1)[0].script;
        let secret = ctx.secret(STATS_SECRET).expect("secret");
        assert!(!probe.contains(secret.expose()), "{probe}");
        assert!(
            probe.contains("-K - 'http://192.0.2.11:8404/stats;csv'"),
            "{probe}"
        );
        assert!(probe.contains("/etc/haproxy/haproxy.cfg"), "{probe}");
        assert_eq!(stats_url(&lb1), "http://192.0.2.11:8404/stats;csv");
        assert!(ready_script(&lb1).contains("'http://192.0.2.11:8404/stats'"));
    }
}
