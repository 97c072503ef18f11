//! `kbz.toml`: cluster settings with documented defaults (see docs/inventory.md).
//! Unknown keys are errors (a typo must not silently fall back to a default).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::notifier::Level;

/// The whole kbz.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cluster-wide settings.
    pub cluster: ClusterConfig,
    /// SSH settings.
    pub ssh: SshConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// One virtual IP per service front: `postgres`, `redis`, `rabbitmq`, `mariadb`, `k8s_api`.
    pub vips: BTreeMap<String, IpAddr>,
    /// Pinned versions (`postgres = "15"`, `k3s = "v1.30.4+k3s1"`).
    pub versions: BTreeMap<String, String>,
    /// PostgreSQL settings.
    pub postgres: PostgresConfig,
    /// Kubernetes settings.
    pub kubernetes: KubernetesConfig,
    /// Notification targets.
    pub notify: Vec<NotifyTarget>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: ClusterConfig::default(),
            ssh: SshConfig::default(),
            timeouts: Timeouts::default(),
            vips: BTreeMap::new(),
            versions: BTreeMap::new(),
            postgres: PostgresConfig::default(),
            kubernetes: KubernetesConfig::default(),
            notify: Vec::new(),
        }
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster name, used in notifications and generated names.
    pub name: String,
    /// The private subnet every node, VIP and MetalLB address lives in. Required for validation.
    pub subnet: Option<IpNet>,
    /// Hosts run in parallel per step.
    pub forks: usize,
    /// `http://host:3142` apt proxy written to /etc/apt/apt.conf.d/01kbz-proxy.
    pub apt_proxy: Option<String>,
    /// NTP servers for systemd-timesyncd; empty keeps the distribution's default.
    pub ntp_servers: Vec<String>,
    /// Time zone set on every host.
    pub timezone: String,
    /// Extra packages installed by module 1.
    pub extra_packages: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "kbz".into(),
            subnet: None,
            forks: 10,
            apt_proxy: None,
            ntp_servers: Vec::new(),
            timezone: "UTC".into(),
            extra_packages: Vec::new(),
        }
    }
}

/// `[ssh]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// Private key file; ssh-agent is tried when unset.
    pub key: Option<String>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<String>,
    /// Optional bastion, `user@host:port`.
    pub jump_host: Option<String>,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            key: None,
            known_hosts: None,
            jump_host: None,
        }
    }
}

/// `[timeouts]`, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect + SSH handshake.
    pub connect: u64,
    /// One remote command.
    pub command: u64,
    /// One readiness wait (a cluster forming, a service answering).
    pub readiness: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 10,
            command: 900,
            readiness: 300,
        }
    }
}

/// `[postgres]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Patroni synchronous_mode: no acknowledged commit is lost on failover.
    pub synchronous_mode: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            synchronous_mode: true,
        }
    }
}

/// `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// `k3s` or `kubeadm`.
    pub flavor: String,
    /// MetalLB address pool, `first-last`.
    pub metallb_range: Option<String>,
    /// Pod network.
    pub pod_cidr: String,
    /// Service network.
    pub service_cidr: String,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            flavor: "k3s".into(),
            metallb_range: None,
            pod_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
        }
    }
}

/// One `[[notify]]` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// Name shown in `notify test` output.
    pub name: String,
    /// Apprise-style URL (`slack://`, `discord://`, `tgram://`, `mailto://`, `mailtos://`,
    /// `json://`, or `https://` for a generic JSON webhook). `{secret:NAME}` placeholders are
    /// replaced from the secrets file, so tokens never live in kbz.toml.
    pub url: String,
    /// Minimum level sent.
    #[serde(default = "default_level")]
    pub min_level: Level,
    /// Disabled targets are skipped (and said so).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Per-attempt timeout in seconds.
    #[serde(default = "default_notify_timeout")]
    pub timeout_secs: u64,
    /// Channel-specific options (`to`, `from`, `chat_id`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_level() -> Level {
    Level::Info
}

fn default_true() -> bool {
    true
}

fn default_notify_timeout() -> u64 {
    10
}
