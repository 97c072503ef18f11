//! The inventory (`servers.tsv`): hosts with addresses, roles, SSH settings and labels.
//! Parsing and validation report every problem at once, each as an E-coded `Diagnostic` with
//! `file:line`. The file format is a user-facing contract documented in docs/inventory.md.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// A role a host plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// keepalived + HAProxy.
    Lb,
    /// etcd member.
    Etcd,
    /// PostgreSQL + Patroni.
    Postgres,
    /// Redis + Sentinel.
    Redis,
    /// RabbitMQ.
    Rabbitmq,
    /// MariaDB Galera.
    Mariadb,
    /// ProxySQL.
    Proxysql,
    /// MinIO.
    Minio,
    /// Kubernetes control plane.
    K8sMaster,
    /// Kubernetes worker.
    K8sWorker,
    /// Prometheus + Grafana.
    Monitoring,
    /// Backup runner.
    Backup,
}

impl Role {
    /// Every role, in inventory spelling order.
    pub const ALL: &'static [Role] = &[
        Role::Lb,
        Role::Etcd,
        Role::Postgres,
        Role::Redis,
        Role::Rabbitmq,
        Role::Mariadb,
        Role::Proxysql,
        Role::Minio,
        Role::K8sMaster,
        Role::K8sWorker,
        Role::Monitoring,
        Role::Backup,
    ];

    /// The spelling used in servers.tsv.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::Etcd => "etcd",
            Role::Postgres => "postgres",
            Role::Redis => "redis",
            Role::Rabbitmq => "rabbitmq",
            Role::Mariadb => "mariadb",
            Role::Proxysql => "proxysql",
            Role::Minio => "minio",
            Role::K8sMaster => "k8s-master",
            Role::K8sWorker => "k8s-worker",
            Role::Monitoring => "monitoring",
            Role::Backup => "backup",
        }
    }

    /// Parses the servers.tsv spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Roles whose members form a quorum: an odd count of at least 3 is required.
    pub fn needs_quorum(self) -> bool {
        matches!(
            self,
            Role::Etcd
                | Role::Postgres
                | Role::Redis
                | Role::Rabbitmq
                | Role::Mariadb
                | Role::K8sMaster
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Short hostname (also set on the host by module 1).
    pub hostname: String,
    /// Private address kbz connects to and services bind to.
    pub ip: IpAddr,
    /// Roles.
    pub roles: BTreeSet<Role>,
    /// SSH user (default `root`).
    pub ssh_user: String,
    /// SSH port (default 22).
    pub ssh_port: u16,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// 1-based line in the inventory file.
    pub line: usize,
}

impl Host {
    /// A root@ip:22 host with roles, for tests and tools.
    pub fn new(hostname: &str, ip: IpAddr, roles: &[Role]) -> Self {
        Host {
            hostname: hostname.into(),
            ip,
            roles: roles.iter().copied().collect(),
            ssh_user: "root".into(),
            ssh_port: 22,
            labels: BTreeMap::new(),
            line: 0,
        }
    }

    /// True when the host has the role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The parsed inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The file it came from, as the user named it.
    pub path: String,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Hosts with a role, in file order.
    pub fn with_role(&self, role: Role) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.has(role)).collect()
    }

    /// A host by name.
    pub fn host(&self, hostname: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.hostname == hostname)
    }
}
