//! Network addresses as configuration files and URLs spell them: `IP:PORT` with brackets
//! around an IPv6 address, and `http://IP:PORT`; and [`Routes`], where the controller's own
//! connections to a service address really go (a local tunnel through the bastion).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `IP:PORT`, with brackets around an IPv6 address (`[2001:db8::1]:5432`).
pub fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `http://IP:PORT`, with brackets around an IPv6 address.
pub fn http_url(ip: IpAddr, port: u16) -> String {
    format!("http://{}", host_port(ip, port))
}

/// Where the controller connects to reach a service address: `(ip, port)` mapped to another
/// socket address (the local end of a tunnel through the jump host), every address not in
/// the map reached directly. Empty (the default) means direct everywhere. Cheap to clone
/// (shared); clients keep the real address for names, messages and TLS verification and ask
/// [`Routes::resolve`] only for the socket to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(Arc<BTreeMap<(IpAddr, u16), SocketAddr>>);

impl Routes {
    /// No route: every address reached directly.
    pub fn direct() -> Routes {
        Routes::default()
    }

    /// Connections to `ip:port` go to `via` instead.
    pub fn insert(&mut self, ip: IpAddr, port: u16, via: SocketAddr) {
        Arc::make_mut(&mut self.0).insert((ip, port), via);
    }

    /// The socket address to open for `ip:port`: its route, or itself.
    pub fn resolve(&self, ip: IpAddr, port: u16) -> SocketAddr {
        self.0
            .get(&(ip, port))
            .copied()
            .unwrap_or(SocketAddr::new(ip, port))
    }

    /// The route of `ip:port`, when it has one.
    pub fn get(&self, ip: IpAddr, port: u16) -> Option<SocketAddr> {
        self.0.get(&(ip, port)).copied()
    }

    /// No address is routed.
    pub fn is_direct(&self) -> bool {
        self.0.is_empty()
    }

    /// Every routed address with where it goes, in address order.
    pub fn iter(&self) -> impl Iterator<Item = ((IpAddr, u16), SocketAddr)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_send_listed_addresses_elsewhere_and_the_rest_directly() {
        let mut r = Routes::direct();
        assert!(r.is_direct());
        let shared = r.clone();
        let via: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        r.insert(ip("10.0.0.100"), 5432, via);
        assert_eq!(r.resolve(ip("10.0.0.100"), 5432), via);
        assert_eq!(r.get(ip("10.0.0.100"), 5432), Some(via));
        // Another port of the same address, or another address, is direct.
        assert_eq!(
            r.resolve(ip("10.0.0.100"), 6379),
            "10.0.0.100:6379".parse().expect("addr")
        );
        assert_eq!(
            r.resolve(ip("fd00::1"), 5432),
            "[fd00::1]:5432".parse().expect("addr")
        );
        assert_eq!(r.get(ip("10.0.0.101"), 5432), None);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [((ip("10.0.0.100"), 5432), via)]
        );
        // A clone taken before the insert is not changed by it.
        assert!(shared.is_direct());
        assert_eq!(r.clone(), r);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv4_is_bare_and_ipv6_is_bracketed() {
        assert_eq!(host_port(ip("192.0.2.1"), 5432), "192.0.2.1:5432");
        assert_eq!(host_port(ip("2001:db8::1"), 5432), "[2001:db8::1]:5432");
        assert_eq!(host_port(ip("::1"), 6379), "[::1]:6379");
    }

    #[test]
    fn http_urls() {
        assert_eq!(http_url(ip("10.0.0.11"), 2379), "http://10.0.0.11:2379");
        assert_eq!(http_url(ip("fd00::13"), 2380), "http://[fd00::13]:2380");
    }
}
