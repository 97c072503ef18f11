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
