//! Pure planning of the HAProxy fronts (which VIPs get a front, which hosts serve it, how
//! each backend is health-checked) and the rendered haproxy.cfg.

use kbz_core::component::ComponentError;
use kbz_core::net::host_port;
use kbz_core::{Context, Host, Role};
use kbz_errors::{Code, Diagnostic};
use serde::Serialize;
use std::net::IpAddr;

use crate::{
    AMQP_PORT, K8S_API_PORT, MARIADB_CHECK_PORT, MARIADB_PORT, PATRONI_REST_PORT, POSTGRES_PORT,
    POSTGRES_REPLICAS_PORT, REDIS_PORT, REDIS_SECRET, STATS_PORT, STATS_SECRET, STATS_USER,
};

const TEMPLATE: &str = include_str!("../templates/haproxy.cfg.hbs");

/// How many servers of a backend must be up for it to be healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Exactly one (a primary, a master): none is an outage, two is a split brain.
    ExactlyOne,
    /// At least one (a pool of replicas).
    AtLeastOne,
}

/// One front: a VIP and port, and the backend behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Front {
    /// Backend name in haproxy.cfg and the stats (`postgres_primary`).
    pub backend: &'static str,
    /// The `[vips]` key it binds (`postgres`).
    pub vip_key: &'static str,
    /// The VIP.
    pub vip: IpAddr,
    /// Port on the VIP.
    pub port: u16,
    /// Port the servers serve on.
    pub server_port: u16,
    /// `(hostname, ip)` of the servers, in inventory order.
    pub servers: Vec<(String, IpAddr)>,
    /// Health rule for the backend.
    pub expect: Expect,
}

/// The fronts for this inventory and config: one per VIP that is configured and whose role
/// has hosts. PostgreSQL gets two (primary on 5432, replicas on 5433), Redis one (6379),
/// RabbitMQ one (AMQP 5672: every running node), MariaDB Galera one (3306: one writer at a
/// time, the others `backup`).
pub fn fronts(ctx: &Context) -> Vec<Front> {
    let servers = |role: Role| -> Vec<(String, IpAddr)> {
        ctx.inventory
            .with_role(role)
            .iter()
            .map(|h| (h.hostname.clone(), h.ip))
            .collect()
    };
    let mut out = Vec::new();
    let pg = servers(Role::Postgres);
    if let (Some(vip), false) = (ctx.config.vips.get("postgres"), pg.is_empty()) {
        out.push(Front {
            backend: "postgres_primary",
            vip_key: "postgres",
            vip: *vip,
            port: POSTGRES_PORT,
            server_port: POSTGRES_PORT,
            servers: pg.clone(),
            expect: Expect::ExactlyOne,
        });
        out.push(Front {
            backend: "postgres_replicas",
            vip_key: "postgres",
            vip: *vip,
            port: POSTGRES_REPLICAS_PORT,
            server_port: POSTGRES_PORT,
            servers: pg,
            expect: Expect::AtLeastOne,
        });
    }
    let redis = servers(Role::Redis);
    if let (Some(vip), false) = (ctx.config.vips.get("redis"), redis.is_empty()) {
        out.push(Front {
            backend: "redis_master",
            vip_key: "redis",
            vip: *vip,
            port: REDIS_PORT,
            server_port: REDIS_PORT,
            servers: redis,
            expect: Expect::ExactlyOne,
        });
    }
    let rabbit = servers(Role::Rabbitmq);
    if let (Some(vip), false) = (ctx.config.vips.get("rabbitmq"), rabbit.is_empty()) {
        out.push(Front {
            backend: "rabbitmq",
            vip_key: "rabbitmq",
            vip: *vip,
            port: AMQP_PORT,
            server_port: AMQP_PORT,
            servers: rabbit,
            expect: Expect::AtLeastOne,
        });
    }
    let galera = servers(Role::Mariadb);
    if let (Some(vip), false) = (ctx.config.vips.get("mariadb"), galera.is_empty()) {
        out.push(Front {
            backend: "mariadb",
            vip_key: "mariadb",
            vip: *vip,
            port: MARIADB_PORT,
            server_port: MARIADB_PORT,
            servers: galera,
            expect: Expect::AtLeastOne,
        });
    }
    let masters = servers(Role::K8sMaster);
    if let (Some(vip), false) = (ctx.config.vips.get("k8s_api"), masters.is_empty()) {
        out.push(Front {
            backend: "k8s_api",
            vip_key: "k8s_api",
            vip: *vip,
            port: K8S_API_PORT,
            server_port: K8S_API_PORT,
            servers: masters,
            expect: Expect::AtLeastOne,
        });
    }
    out
}

/// Escapes a value for one haproxy.cfg word: backslash, space, quotes and `#` get a
/// backslash. Control characters cannot be carried: `None`.
pub fn escape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() {
            return None;
        }
        if matches!(c, '\\' | ' ' | '"' | '\'' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    Some(out)
}

fn secret_word(ctx: &Context, name: &str) -> Result<String, ComponentError> {
    let s = ctx.secret(name)?;
    escape(s.expose()).filter(|e| !e.is_empty()).ok_or_else(|| {
        ComponentError::Input(
            Diagnostic::new(
                Code::E052,
                format!("secret `{name}` is empty or holds control characters"),
            )
            .hint(format!(
                "set `{name}` to letters and digits in the secrets file, or delete the line \
                     to have one generated (services that use it must get the new value too)"
            )),
        )
    })
}

#[derive(Serialize)]
struct ServerData {
    name: String,
    addr: String,
    rest_port: u16,
}

#[derive(Serialize)]
struct PostgresData {
    primary_bind: String,
    replicas_bind: String,
    servers: Vec<ServerData>,
}

#[derive(Serialize)]
struct RedisData {
    bind: String,
    password: String,
    servers: Vec<ServerData>,
}

#[derive(Serialize)]
struct MariadbServer {
    name: String,
    addr: String,
    check_port: u16,
    /// Every server but the first: used only while the ones before it are down.
    backup: bool,
}

#[derive(Serialize)]
struct MariadbData {
    bind: String,
    servers: Vec<MariadbServer>,
}

/// A front whose every server serves (no primary, no backup).
#[derive(Serialize)]
struct PoolData {
    bind: String,
    servers: Vec<ServerData>,
}

#[derive(Serialize)]
struct CfgData {
    hostname: String,
    stats_bind: String,
    stats_user: &'static str,
    stats_password: String,
    postgres: Option<PostgresData>,
    redis: Option<RedisData>,
    rabbitmq: Option<PoolData>,
    mariadb: Option<MariadbData>,
    k8s_api: Option<PoolData>,
}

/// Renders /etc/haproxy/haproxy.cfg for one lb host.
pub fn render_config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
    let fronts = fronts(ctx);
    let find = |backend: &str| fronts.iter().find(|f| f.backend == backend);
    let servers = |f: &Front, rest_port: u16| -> Vec<ServerData> {
        f.servers
            .iter()
            .map(|(name, ip)| ServerData {
                name: name.clone(),
                addr: host_port(*ip, f.server_port),
                rest_port,
            })
            .collect()
    };
    let postgres = match (find("postgres_primary"), find("postgres_replicas")) {
        (Some(p), Some(r)) => Some(PostgresData {
            primary_bind: host_port(p.vip, p.port),
            replicas_bind: host_port(r.vip, r.port),
            servers: servers(p, PATRONI_REST_PORT),
        }),
        _ => None,
    };
    let redis = match find("redis_master") {
        Some(f) => Some(RedisData {
            bind: host_port(f.vip, f.port),
            password: secret_word(ctx, REDIS_SECRET)?,
            servers: servers(f, 0),
        }),
        None => None,
    };
    let rabbitmq = find("rabbitmq").map(|f| PoolData {
        bind: host_port(f.vip, f.port),
        servers: servers(f, 0),
    });
    let mariadb = find("mariadb").map(|f| MariadbData {
        bind: host_port(f.vip, f.port),
        servers: f
            .servers
            .iter()
            .enumerate()
            .map(|(i, (name, ip))| MariadbServer {
                name: name.clone(),
                addr: host_port(*ip, f.server_port),
                check_port: MARIADB_CHECK_PORT,
                backup: i > 0,
            })
            .collect(),
    });
    let k8s_api = find("k8s_api").map(|f| PoolData {
        bind: host_port(f.vip, f.port),
        servers: servers(f, 0),
    });
    kbz_core::template::render(
        "haproxy.cfg.hbs",
        TEMPLATE,
        &CfgData {
            hostname: host.hostname.clone(),
            stats_bind: host_port(host.ip, STATS_PORT),
            stats_user: STATS_USER,
            stats_password: secret_word(ctx, STATS_SECRET)?,
            postgres,
            redis,
            rabbitmq,
            mariadb,
            k8s_api,
        },
    )
}
