//! The postflight port map: every endpoint the installed stack answers on, from the same
//! [`Listen`] data the preflight checks: a front on a VIP once (with the lb hosts that can
//! hold it), each member's own port per host. Loopback binds are left out (nobody outside
//! the host reaches them). Checking the endpoints by connecting is the caller's (kbz-core
//! opens no connection).

use serde::Serialize;
use std::sync::Arc;

use super::Listen;
use crate::component::Component;
use crate::context::Context;

/// One endpoint of the port map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// What answers (`PostgreSQL primary`).
    pub service: String,
    /// `address:port`.
    pub address: String,
    /// How it is reached: `HAProxy on lb1, lb2` for a front, `member db1` otherwise.
    pub via: String,
    /// How clients authenticate.
    pub auth: String,
    /// Whether it accepted a TCP connection from the controller (`None`: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
}

/// Every endpoint of the selected components over the inventory, in module then inventory
/// order.
pub fn port_map(ctx: &Context, components: &[Arc<dyn Component>]) -> Vec<Endpoint> {
    let mut out: Vec<(Endpoint, Vec<String>)> = Vec::new();
    for c in components {
        for host in ctx.inventory.hosts.iter().filter(|h| c.applies_to(h)) {
            for l in c.listens(ctx, host) {
                for addr in l.addrs.iter().filter(|a| !a.is_loopback()) {
                    // A bind on every address is reached on the host's own.
                    let addr = if addr.is_unspecified() {
                        &host.ip
                    } else {
                        addr
                    };
                    push(
                        &mut out,
                        &l,
                        crate::net::host_port(*addr, l.port),
                        &host.hostname,
                    );
                }
            }
        }
    }
    out.into_iter()
        .map(|(mut e, hosts)| {
            e.via = match &e.via[..] {
                "" => format!("member {}", hosts.join(", ")),
                front => format!("{front} on {}", hosts.join(", ")),
            };
            e
        })
        .collect()
}

fn push(out: &mut Vec<(Endpoint, Vec<String>)>, l: &Listen, address: String, host: &str) {
    if let Some((_, hosts)) = out
        .iter_mut()
        .find(|(e, _)| e.address == address && e.service == l.service)
    {
        hosts.push(host.into());
        return;
    }
    out.push((
        Endpoint {
            service: l.service.clone(),
            address,
            via: l.via.clone().unwrap_or_default(),
            auth: l.auth.clone(),
            reachable: None,
        },
        vec![host.into()],
    ));
}

/// A listener of one of kbz's own services on an address its [`Listen`] data does not name
/// (a database on every interface, a public address): E059.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrayBind {
    /// The host.
    pub host: String,
    /// The process holding the socket (`postgres`).
    pub process: String,
    /// What it is bound to (`0.0.0.0:5432`).
    pub address: String,
    /// Where kbz binds that service (`10.0.0.11:5432, 127.0.0.1:5432`), or `-` for a port
    /// kbz's port map does not list for that process.
    pub expected: String,
}

/// The read-only script listing a host's TCP listeners (one round trip); its answer is read
/// by [`parse_listeners`].
pub const LISTENERS_SCRIPT: &str =
    "# kbz listeners\nss -ltnpH | sed 's/^/listen /'; echo listen_end\n";

/// Parses [`LISTENERS_SCRIPT`]'s answer strictly.
pub fn parse_listeners(stdout: &str) -> Result<Vec<super::script::Listener>, String> {
    let mut out = Vec::new();
    let mut ended = false;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        match line.strip_prefix("listen ") {
            Some(l) if !ended => out.push(super::script::parse_listener(l)?),
            _ if line.trim() == "listen_end" && !ended => ended = true,
            _ => return Err(format!("unexpected line `{line}`")),
        }
    }
    if !ended {
        return Err("the answer has no `listen_end` line (is `ss` installed?)".into());
    }
    Ok(out)
}

/// Every listener on `host` held by a process of kbz's services there, bound where that
/// service's [`Listen`] data does not say: on every address when kbz binds chosen ones, or
/// on an address outside them. Loopback binds are never stray.
pub fn stray_binds(
    ctx: &Context,
    components: &[Arc<dyn Component>],
    host: &crate::Host,
    listeners: &[super::script::Listener],
) -> Vec<StrayBind> {
    let listens: Vec<Listen> = components
        .iter()
        .filter(|c| c.applies_to(host))
        .flat_map(|c| c.listens(ctx, host))
        .collect();
    let mut out = Vec::new();
    for l in listeners {
        if l.addr.is_some_and(|a| a.is_loopback()) {
            continue;
        }
        for p in &l.processes {
            if !listens.iter().any(|s| s.owners.contains(p)) {
                continue;
            }
            let matching: Vec<&Listen> = listens
                .iter()
                .filter(|s| s.port == l.port && s.owners.contains(p))
                .collect();
            let allowed = |a: &std::net::IpAddr| {
                matching
                    .iter()
                    .any(|s| s.addrs.iter().any(|b| b == a || b.is_unspecified()))
            };
            let ok = match l.addr {
                None => matching
                    .iter()
                    .any(|s| s.addrs.iter().any(|b| b.is_unspecified())),
                Some(a) => allowed(&a),
            };
            if ok {
                continue;
            }
            let expected: Vec<String> = matching
                .iter()
                .flat_map(|s| s.addrs.iter().map(|a| crate::net::host_port(*a, s.port)))
                .collect();
            out.push(StrayBind {
                host: host.hostname.clone(),
                process: p.clone(),
                address: match l.addr {
                    Some(a) => crate::net::host_port(a, l.port),
                    None => format!("*:{}", l.port),
                },
                expected: if expected.is_empty() {
                    "-".into()
                } else {
                    expected.join(", ")
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Host, Inventory, Resource, Secrets};
    use std::net::IpAddr;

    /// A database on its member address and loopback, fronted on a VIP.
    #[derive(Debug)]
    struct Db;

    impl Component for Db {
        fn name(&self) -> &'static str {
            "db"
        }
        fn module(&self) -> u8 {
            5
        }
        fn desired(
            &self,
            _ctx: &Context,
            _host: &Host,
        ) -> Result<Vec<Resource>, crate::component::ComponentError> {
            Ok(Vec::new())
        }
        fn listens(&self, _ctx: &Context, host: &Host) -> Vec<Listen> {
            let lo = IpAddr::from([127, 0, 0, 1]);
            let vip = IpAddr::from([192, 0, 2, 100]);
            vec![
                Listen::new("db", 5432, &[host.ip, lo], &["postgres"]),
                Listen::new("front", 5432, &[vip], &["haproxy"]),
            ]
        }
    }

    fn ctx() -> Context {
        let inv = Inventory::parse("servers.tsv", b"db1\t192.0.2.11\tpostgres\n").expect("inv");
        Context::new(
            inv,
            Config::default(),
            Secrets::placeholders(Vec::<String>::new()),
        )
    }

    fn listeners(ss: &str) -> Vec<super::super::script::Listener> {
        let mut s: String = ss.lines().map(|l| format!("listen {l}\n")).collect();
        s.push_str("listen_end\n");
        parse_listeners(&s).expect("ss lines")
    }

    #[test]
    fn only_kbz_services_off_their_addresses_are_stray() {
        let c = ctx();
        let comps: Vec<Arc<dyn Component>> = vec![Arc::new(Db)];
        let host = &c.inventory.hosts[0];
        let ok = listeners(
            "LISTEN 0 244 192.0.2.11:5432 0.0.0.0:* users:((\"postgres\",pid=10,fd=5))\n\
             LISTEN 0 244 127.0.0.1:5432 0.0.0.0:* users:((\"postgres\",pid=10,fd=6))\n\
             LISTEN 0 244 192.0.2.100:5432 0.0.0.0:* users:((\"haproxy\",pid=11,fd=7))\n\
             LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n\
             LISTEN 0 128 127.0.0.1:9999 0.0.0.0:* users:((\"postgres\",pid=10,fd=9))",
        );
        assert_eq!(stray_binds(&c, &comps, host, &ok), Vec::new());
        let bad = listeners(
            "LISTEN 0 244 0.0.0.0:5432 0.0.0.0:* users:((\"postgres\",pid=10,fd=5))\n\
             LISTEN 0 244 203.0.113.7:5432 0.0.0.0:* users:((\"haproxy\",pid=11,fd=7))\n\
             LISTEN 0 244 192.0.2.11:7000 0.0.0.0:* users:((\"postgres\",pid=10,fd=8))",
        );
        let got = stray_binds(&c, &comps, host, &bad);
        let shown: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|s| (s.process.as_str(), s.address.as_str(), s.expected.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("postgres", "*:5432", "192.0.2.11:5432, 127.0.0.1:5432"),
                ("haproxy", "203.0.113.7:5432", "192.0.2.100:5432"),
                ("postgres", "192.0.2.11:7000", "-"),
            ]
        );
    }

    #[test]
    fn a_listener_answer_without_its_end_is_refused() {
        assert!(parse_listeners("listen LISTEN 0 1 127.0.0.1:1 0.0.0.0:*\n").is_err());
        assert!(parse_listeners("listen_end\nlisten LISTEN 0 1 127.0.0.1:1 0.0.0.0:*\n").is_err());
        assert_eq!(parse_listeners("listen_end\n"), Ok(Vec::new()));
    }
}
