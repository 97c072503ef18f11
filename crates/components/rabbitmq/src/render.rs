//! Rendering of every file kbz writes for RabbitMQ on one host. Pure: the same inputs give
//! the same bytes, which the snapshot tests and the 0-change re-run rely on.

use kbz_core::component::ComponentError;
use kbz_core::{template, Context, Host, Role};
use serde_json::json;
use std::net::IpAddr;

use crate::layout::{self, Layout};
use crate::SECRET_COOKIE;

const CONF_T: &str = include_str!("../templates/rabbitmq.conf.hbs");
const ENV_T: &str = include_str!("../templates/rabbitmq-env.conf.hbs");
const PLUGINS_T: &str = include_str!("../templates/enabled_plugins.hbs");

/// Owner of the files the daemon reads: root writes, the `rabbitmq` group reads.
pub const DAEMON_OWNER: &str = "root:rabbitmq";
/// Owner the package gives its directories, the cookie and enabled_plugins.
pub const RABBITMQ_OWNER: &str = "rabbitmq:rabbitmq";

/// One file with its content, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Permission bits.
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
}

/// The RabbitMQ hosts of the inventory, in inventory order (the first is the join target of
/// a fresh cluster).
pub fn rabbitmq_hosts(ctx: &Context) -> Vec<&Host> {
    ctx.inventory.with_role(Role::Rabbitmq)
}

/// `ip:port` as rabbitmq.conf's `listeners.tcp.N` spells it (no brackets around IPv6).
pub fn listener(ip: IpAddr, port: u16) -> String {
    format!("{ip}:{port}")
}

/// The Erlang VM arguments that bind the distribution listener to `ip` (IPv4 only; an IPv6
/// host keeps Erlang's default and the docs say so).
pub fn dist_args(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!(
                "-kernel inet_dist_use_interface {{{},{},{},{}}}",
                o[0], o[1], o[2], o[3]
            ))
        }
        IpAddr::V6(_) => None,
    }
}

/// rabbitmq.conf for `host`: listeners on its address, the plugins' listeners, partition
/// handling and the classic_config peer list of every RabbitMQ host.
pub fn conf(ctx: &Context, host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    let nodes: Vec<serde_json::Value> = rabbitmq_hosts(ctx)
        .iter()
        .enumerate()
        .map(|(i, h)| json!({ "n": i + 1, "name": layout.node(h) }))
        .collect();
    template::render(
        "rabbitmq.conf.hbs",
        CONF_T,
        &json!({
            "hostname": host.hostname,
            "amqp": listener(host.ip, layout.amqp_port),
            "ip": host.ip.to_string(),
            "management_port": layout.management_port,
            "prometheus_port": layout.prometheus_port,
            "nodes": nodes,
        }),
    )
}

/// rabbitmq-env.conf for `host`: the node name, ports and the distribution bind address (in
/// the loopback layout also the data, log, config and plugin paths).
pub fn env_conf(host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    let mut extra = Vec::new();
    if layout.per_node_env {
        let p = |x: &str| layout.path(host, x);
        extra.push(format!("MNESIA_BASE={}", p("/var/lib/rabbitmq/mnesia")));
        extra.push(format!("LOG_BASE={}", p("/var/log/rabbitmq")));
        extra.push(format!("CONFIG_FILE={}", p(layout::CONF)));
        extra.push(format!(
            "ENABLED_PLUGINS_FILE={}",
            p(layout::ENABLED_PLUGINS)
        ));
        extra.push(format!(
            "PID_FILE={}",
            p("/var/lib/rabbitmq/mnesia/rabbit.pid")
        ));
    }
    template::render(
        "rabbitmq-env.conf.hbs",
        ENV_T,
        &json!({
            "hostname": host.hostname,
            "node": layout.node(host),
            "longnames": layout.longnames(),
            "amqp_port": layout.amqp_port,
            "dist_port": layout.dist_port_of(host),
            "dist_args": dist_args(host.ip).unwrap_or_default(),
            "extra": extra,
        }),
    )
}

/// enabled_plugins: management and Prometheus.
pub fn enabled_plugins() -> Result<String, ComponentError> {
    template::render("enabled_plugins.hbs", PLUGINS_T, &json!({}))
}

/// Every file kbz owns on a RabbitMQ host, in the order they are written: the cookie first,
/// so the package's first start already uses it.
pub fn files(
    ctx: &Context,
    host: &Host,
    layout: &Layout,
) -> Result<Vec<RenderedFile>, ComponentError> {
    let cookie = ctx.secret(SECRET_COOKIE)?;
    let f = |p: &str, content: String, mode: u32, owner: &str| RenderedFile {
        path: layout.path(host, p),
        content,
        mode,
        owner: owner.into(),
    };
    Ok(vec![
        f(
            layout::COOKIE,
            cookie.expose().to_string(),
            0o400,
            RABBITMQ_OWNER,
        ),
        f(
            layout::ENV_CONF,
            env_conf(host, layout)?,
            0o644,
            DAEMON_OWNER,
        ),
        f(layout::CONF, conf(ctx, host, layout)?, 0o640, DAEMON_OWNER),
        f(
            layout::ENABLED_PLUGINS,
            enabled_plugins()?,
            0o644,
            RABBITMQ_OWNER,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_dist_args() {
        let v4: IpAddr = "192.0.2.31".parse().expect("ip");
        assert_eq!(listener(v4, 5672), "192.0.2.31:5672");
        assert_eq!(
            dist_args(v4).as_deref(),
            Some("-kernel inet_dist_use_interface {192,0,2,31}")
        );
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(listener(v6, 5672), "2001:db8::1:5672");
        assert_eq!(dist_args(v6), None);
    }

    #[test]
    fn plugins_file_is_an_erlang_term() {
        assert_eq!(
            enabled_plugins().expect("plugins"),
            "[rabbitmq_management,rabbitmq_prometheus].\n"
        );
    }
}
