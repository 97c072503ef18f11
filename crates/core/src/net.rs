//! Network addresses as configuration files and URLs spell them: `IP:PORT` with brackets
//! around an IPv6 address, and `http://IP:PORT`.

use std::net::IpAddr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
