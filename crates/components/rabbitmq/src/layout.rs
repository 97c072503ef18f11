//! Where RabbitMQ's files live, which ports it uses, how its nodes are named and how the CLI
//! tools are invoked: Debian's package layout on a real host, or a loopback layout for tests
//! that run several nodes on one machine (every path under a base directory, long node names
//! on 127.0.0.x addresses, a private epmd port).

use kbz_core::shell::quote;
use kbz_core::Host;

/// rabbitmq.conf (the new-style config file).
pub const CONF: &str = "/etc/rabbitmq/rabbitmq.conf";
/// rabbitmq-env.conf (sourced by the server and the CLI tools).
pub const ENV_CONF: &str = "/etc/rabbitmq/rabbitmq-env.conf";
/// The plugins enabled at start.
pub const ENABLED_PLUGINS: &str = "/etc/rabbitmq/enabled_plugins";
/// The configuration directory.
pub const CONF_DIR: &str = "/etc/rabbitmq";
/// The `rabbitmq` user's home and the data directory.
pub const DATA_DIR: &str = "/var/lib/rabbitmq";
/// The Erlang cookie: identical on every node, 0400 rabbitmq:rabbitmq.
pub const COOKIE: &str = "/var/lib/rabbitmq/.erlang.cookie";

/// How node names are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `rabbit@<short hostname>` (Debian's default; /etc/hosts from kbz-base resolves it).
    ShortHostname,
    /// `<hostname>@<ip>` with long names (loopback tests: one machine, several addresses,
    /// one epmd, so every node needs a name of its own).
    LongIp,
}

/// Paths, ports, node naming and CLI invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Base directory of the loopback layout (empty on a real host); [`Layout::path`] puts
    /// each host's files under `root/<hostname>`.
    pub root: String,
    /// AMQP port (5672).
    pub amqp_port: u16,
    /// Erlang distribution port (25672); see [`Layout::dist_port_of`].
    pub dist_port: u16,
    /// Management HTTP port (15672).
    pub management_port: u16,
    /// Prometheus metrics port (15692).
    pub prometheus_port: u16,
    /// Node naming.
    pub naming: Naming,
    /// rabbitmq-env.conf also names the data, log, config and plugin paths, and the CLI
    /// tools are pointed at it (loopback).
    pub per_node_env: bool,
    /// The epmd port the CLI tools and nodes use (`None`: the default 4369).
    pub epmd_port: Option<u16>,
    /// Directory of `rabbitmqctl` and `rabbitmq-diagnostics` (`None`: Debian's wrappers in
    /// the PATH, which run the tools as the `rabbitmq` user).
    pub bin_dir: Option<String>,
}

impl Layout {
    /// Debian's package layout.
    pub fn debian() -> Self {
        Layout {
            root: String::new(),
            amqp_port: 5672,
            dist_port: 25672,
            management_port: 15672,
            prometheus_port: 15692,
            naming: Naming::ShortHostname,
            per_node_env: false,
            epmd_port: None,
            bin_dir: None,
        }
    }

    /// Several nodes on one machine: every host's files under `root/<hostname>`, long names
    /// on the hosts' (loopback) addresses, a private epmd port, the tools run directly.
    /// AMQP, management and Prometheus use `base_port` to `base_port + 2` on each host's
    /// address; distribution uses `dist_base` plus the address's last octet.
    pub fn loopback(root: &str, base_port: u16, dist_base: u16, epmd_port: u16) -> Self {
        Layout {
            root: root.trim_end_matches('/').to_string(),
            amqp_port: base_port,
            dist_port: dist_base,
            management_port: base_port + 1,
            prometheus_port: base_port + 2,
            naming: Naming::LongIp,
            per_node_env: true,
            epmd_port: Some(epmd_port),
            bin_dir: Some("/usr/lib/rabbitmq/bin".into()),
        }
    }

    /// `path` on `host`: unchanged on a real host, under `root/<hostname>` in tests.
    pub fn path(&self, host: &Host, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}{}", self.root, host.hostname, path)
        }
    }

    /// The distribution port of `host`: [`Layout::dist_port`] on a real host; in the
    /// loopback layout plus the last octet of the host's address, since RabbitMQ refuses a
    /// distribution port that another node of the machine listens on (any address).
    pub fn dist_port_of(&self, host: &Host) -> u16 {
        match (self.naming, host.ip) {
            (Naming::LongIp, std::net::IpAddr::V4(v4)) => {
                self.dist_port.wrapping_add(u16::from(v4.octets()[3]))
            }
            _ => self.dist_port,
        }
    }

    /// The node name of `host` (`rabbit@mq1`).
    pub fn node(&self, host: &Host) -> String {
        match self.naming {
            Naming::ShortHostname => format!("rabbit@{}", host.hostname),
            Naming::LongIp => format!("{}@{}", host.hostname, host.ip),
        }
    }

    /// True when nodes use long names.
    pub fn longnames(&self) -> bool {
        self.naming == Naming::LongIp
    }

    /// The shell lines that prepare the CLI tools' environment on `host` (empty on Debian,
    /// where the wrappers switch to the `rabbitmq` user and its home with the cookie).
    pub fn cli_env(&self, host: &Host) -> String {
        if !self.per_node_env {
            return String::new();
        }
        let mut s = format!(
            "HOME={}; export HOME\nRABBITMQ_CONF_ENV_FILE={}; export RABBITMQ_CONF_ENV_FILE\n",
            quote(&self.path(host, DATA_DIR)),
            quote(&self.path(host, ENV_CONF)),
        );
        if let Some(p) = self.epmd_port {
            s.push_str(&format!("ERL_EPMD_PORT={p}; export ERL_EPMD_PORT\n"));
        }
        s
    }

    /// A CLI tool (`rabbitmqctl`, `rabbitmq-diagnostics`), bounded by `timeout`.
    pub fn tool(&self, name: &str, secs: u32) -> String {
        let bin = match &self.bin_dir {
            Some(d) => format!("{d}/{name}"),
            None => name.to_string(),
        };
        let long = if self.longnames() { " --longnames" } else { "" };
        format!("timeout {secs} {bin}{long}")
    }
}
