//! What a component binds and what betrays a conflicting install, as data: [`Listen`] (from
//! [`crate::Component::listens`]) and [`Conflict`] (from [`crate::Component::conflicts`]).
//! A leaf module: the preflight and the port map read it, components fill it.

use serde::Serialize;
use std::net::IpAddr;

/// A TCP port a component binds on a host: what answers there, on which addresses, which
/// processes are kbz's own service on it, and how clients reach and authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen {
    /// What answers (`PostgreSQL primary`, `Patroni REST`).
    pub service: String,
    /// Addresses bound (a node IP, a VIP, 127.0.0.1).
    pub addrs: Vec<IpAddr>,
    /// The port.
    pub port: u16,
    /// Process names (`ss -p`) of kbz's own service on this port.
    pub owners: Vec<String>,
    /// A file only kbz's install of the service has; a listener with an owner's name but
    /// without it is another install of the same software.
    pub marker: Option<String>,
    /// The front the clients go through (`HAProxy`), when this is one.
    pub via: Option<String>,
    /// How clients authenticate.
    pub auth: String,
}

impl Listen {
    /// A port of `service` bound on `addrs`, owned by the processes named `owners`.
    pub fn new(service: &str, port: u16, addrs: &[IpAddr], owners: &[&str]) -> Self {
        Listen {
            service: service.into(),
            addrs: addrs.to_vec(),
            port,
            owners: owners.iter().map(|o| o.to_string()).collect(),
            marker: None,
            via: None,
            auth: String::new(),
        }
    }

    /// The file only kbz's install has.
    pub fn marker(mut self, path: &str) -> Self {
        self.marker = Some(path.into());
        self
    }

    /// The front clients go through.
    pub fn via(mut self, front: &str) -> Self {
        self.via = Some(front.into());
        self
    }

    /// How clients authenticate.
    pub fn auth(mut self, auth: &str) -> Self {
        self.auth = auth.into();
        self
    }
}

/// A file whose presence on a host means another install kbz must know about (Debian's
/// default PostgreSQL cluster), or, with [`Conflict::line_prefix`], a file with a line that
/// says so (an etcd member configured without TLS when TLS is wanted). `path` may hold one
/// `*` per component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The path (or glob) that betrays it.
    pub path: String,
    /// A text some line of the file must begin with for the conflict to hold (`None`: the
    /// file's presence is enough).
    pub line_prefix: Option<String>,
    /// What it is.
    pub what: String,
    /// What kbz does about it or what the operator must do.
    pub fix: String,
    /// Whether the install must stop.
    pub severity: Severity,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The install goes on.
    Warning,
    /// The install stops before anything changes.
    Error,
}

impl Severity {
    /// `warning`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}
