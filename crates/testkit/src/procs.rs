//! Daemons a test starts and free ports for them: [`Daemons`] kills every child it holds (by
//! its pid) when dropped, however the test ends; [`free_port`] and [`free_port_on`] find
//! ports nothing listens on.

use std::net::{IpAddr, TcpListener};
use std::process::Child;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A TCP port free on every one of `ips` (127.0.0.x "hosts") and not in `avoid`.
pub fn free_port_on(ips: &[IpAddr], avoid: &[u16]) -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind((ips[0], 0)).expect("bind");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if !avoid.contains(&p) && ips.iter().all(|ip| TcpListener::bind((*ip, p)).is_ok()) {
            return p;
        }
    }
    panic!("no free port on {ips:?}");
}

/// Child processes by name, killed by pid (and reaped) when dropped, however the test ends.
#[derive(Debug, Default)]
pub struct Daemons(Vec<(String, Child)>);

impl Daemons {
    /// No daemons yet.
    pub fn new() -> Self {
        Daemons::default()
    }

    /// Holds `child` as `name` from now on.
    pub fn add(&mut self, name: impl Into<String>, child: Child) {
        self.0.push((name.into(), child));
    }

    /// Kills the daemons named `name` now.
    pub fn kill(&mut self, name: &str) {
        for (n, c) in &mut self.0 {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.0.retain(|(n, _)| n != name);
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| !s.contains("State:\tZ"))
            .unwrap_or(false)
    }

    #[test]
    fn daemons_are_killed_when_dropped_even_on_failure() {
        let pids = std::panic::catch_unwind(|| {
            let mut d = Daemons::new();
            let a = Command::new("sleep").arg("300").spawn().expect("sleep");
            let b = Command::new("sleep").arg("300").spawn().expect("sleep");
            let (pa, pb) = (a.id(), b.id());
            d.add("a", a);
            d.add("b", b);
            d.kill("a");
            assert!(!alive(pa) && alive(pb));
            panic!("{pa} {pb}");
        })
        .expect_err("the closure panics")
        .downcast::<String>()
        .expect("message");
        for pid in pids.split(' ') {
            assert!(!alive(pid.parse().expect("pid")), "{pid} left running");
        }
    }

    #[test]
    fn free_ports_are_bindable_on_every_address() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip")];
        let p = free_port_on(&ips, &[]);
        assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
        assert_ne!(free_port(), 0);
    }
}
