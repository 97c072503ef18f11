//! Where Redis and Sentinel live on a host: file paths, ports and bind addresses. Real hosts
//! use [`Layout::debian`] (Debian 12's `redis-server` and `redis-sentinel` packages); the
//! loopback test runs three clusters' worth of daemons on one machine with
//! [`Layout::loopback`], every path under a per-host directory.

use kbz_core::Host;
use std::net::IpAddr;
use std::path::PathBuf;

/// Paths and ports of the Redis and Sentinel daemons of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `None` on real hosts; in loopback tests every path is prefixed with `root/<hostname>`.
    pub root: Option<PathBuf>,
    /// Redis port on every node.
    pub redis_port: u16,
    /// Sentinel port on every node.
    pub sentinel_port: u16,
    /// Also bind 127.0.0.1 (real hosts: local tools and kbz's scripts use it). Off when the
    /// inventory addresses are themselves loopback addresses sharing one machine.
    pub bind_loopback: bool,
}

/// Redis's own configuration file, read by Debian's unit and rewritten by Redis.
pub const REDIS_MAIN: &str = "/etc/redis/redis.conf";
/// kbz's Redis settings, loaded after [`REDIS_MAIN`].
pub const REDIS_KBZ: &str = "/etc/redis/kbz-redis.conf";
/// The ACL file that gives Redis's default user its password (as a SHA-256).
pub const REDIS_ACL: &str = "/etc/redis/kbz-redis.acl";
/// The Redis password for kbz's own `redis-cli` calls (root only).
pub const REDIS_PASS: &str = "/etc/redis/kbz-redis.pass";
/// Sentinel's own configuration file, read by Debian's unit and rewritten by Sentinel.
pub const SENTINEL_MAIN: &str = "/etc/redis/sentinel.conf";
/// kbz's Sentinel settings, loaded after [`SENTINEL_MAIN`].
pub const SENTINEL_KBZ: &str = "/etc/redis/kbz-sentinel.conf";
/// The ACL file that gives Sentinel's default user its password (as a SHA-256).
pub const SENTINEL_ACL: &str = "/etc/redis/kbz-sentinel.acl";
/// The Sentinel password for kbz's own `redis-cli` calls (root only).
pub const SENTINEL_PASS: &str = "/etc/redis/kbz-sentinel.pass";
/// systemd drop-in that adds `--include` for kbz's Redis settings.
pub const REDIS_DROPIN: &str = "/etc/systemd/system/redis-server.service.d/kbz.conf";
/// systemd drop-in that adds `--include` for kbz's Sentinel settings.
pub const SENTINEL_DROPIN: &str = "/etc/systemd/system/redis-sentinel.service.d/kbz.conf";
/// Data directory (AOF and RDB files); left in place by uninstall.
pub const DATA_DIR: &str = "/var/lib/redis";
/// Redis log file.
pub const REDIS_LOG: &str = "/var/log/redis/redis-server.log";
/// Sentinel log file.
pub const SENTINEL_LOG: &str = "/var/log/redis/redis-sentinel.log";
/// Redis pid file (Debian's unit expects it here).
pub const REDIS_PID: &str = "/run/redis/redis-server.pid";
/// Sentinel pid file (Debian's unit expects it here).
pub const SENTINEL_PID: &str = "/run/sentinel/redis-sentinel.pid";
/// The Redis server binary.
pub const REDIS_SERVER_BIN: &str = "/usr/bin/redis-server";
/// The Sentinel binary.
pub const REDIS_SENTINEL_BIN: &str = "/usr/bin/redis-sentinel";

impl Layout {
    /// Debian 12's packages: /etc/redis, ports 6379 and 26379, bound to the host's inventory
    /// address and 127.0.0.1.
    pub fn debian() -> Self {
        Layout {
            root: None,
            redis_port: 6379,
            sentinel_port: 26379,
            bind_loopback: true,
        }
    }

    /// Daemons of several "hosts" on one machine: paths under `root/<hostname>`, the given
    /// ports, bound to the inventory (loopback) address only.
    pub fn loopback(root: PathBuf, redis_port: u16, sentinel_port: u16) -> Self {
        Layout {
            root: Some(root),
            redis_port,
            sentinel_port,
            bind_loopback: false,
        }
    }

    /// A path of the real layout, moved under the host's root in loopback tests.
    pub fn path(&self, host: &Host, p: &str) -> String {
        match &self.root {
            None => p.to_string(),
            Some(r) => format!("{}/{}{}", r.display(), host.hostname, p),
        }
    }

    /// The `bind` line's addresses: the inventory address first, then loopback if wanted.
    pub fn bind(&self, host: &Host) -> String {
        if self.bind_loopback && !host.ip.is_loopback() {
            format!("{} {}", host.ip, loopback_of(host.ip))
        } else {
            host.ip.to_string()
        }
    }

    /// The address kbz's scripts use to reach the daemons on the host they run on.
    pub fn local_addr(&self, host: &Host) -> String {
        if self.bind_loopback {
            loopback_of(host.ip).to_string()
        } else {
            host.ip.to_string()
        }
    }
}

/// The loopback address of the same family.
fn loopback_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Role;

    #[test]
    fn debian_binds_the_host_address_and_loopback() {
        let h = Host::new("db1", "192.0.2.21".parse().expect("ip"), &[Role::Redis]);
        let l = Layout::debian();
        assert_eq!(l.bind(&h), "192.0.2.21 127.0.0.1");
        assert_eq!(l.local_addr(&h), "127.0.0.1");
        assert_eq!(l.path(&h, REDIS_KBZ), "/etc/redis/kbz-redis.conf");
    }

    #[test]
    fn loopback_layout_moves_paths_under_the_host_root() {
        let h = Host::new("db2", "127.0.0.12".parse().expect("ip"), &[Role::Redis]);
        let l = Layout::loopback(PathBuf::from("/tmp/x"), 7000, 27000);
        assert_eq!(l.path(&h, REDIS_KBZ), "/tmp/x/db2/etc/redis/kbz-redis.conf");
        assert_eq!(l.bind(&h), "127.0.0.12");
        assert_eq!(l.local_addr(&h), "127.0.0.12");
    }
}
