//! kbz-base (module 1): the base every service stands on. Swap off (and out of fstab),
//! kernel modules and sysctls for networking and Kubernetes, base packages, hostname,
//! /etc/hosts from the inventory, time sync, and the optional apt proxy.

mod health;

pub use health::{parse_swaps, parse_time};

use kbz_core::component::{Component, ComponentError, HealthCheck, HealthRaw, Probe};
use kbz_core::{Context, Host, Resource};

/// Kernel modules loaded now and at boot.
pub const MODULES: &[&str] = &["overlay", "br_netfilter"];

/// Kernel parameters set now and persisted in /etc/sysctl.d.
pub const SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    // HAProxy and keepalived bind virtual IPs this node does not hold yet.
    ("net.ipv4.ip_nonlocal_bind", "1"),
    ("vm.swappiness", "1"),
    ("vm.max_map_count", "262144"),
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "524288"),
];

/// Packages every host gets.
pub const PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "gnupg",
    "chrony",
    "kmod",
    "procps",
    "iproute2",
    "rsync",
];

/// Paths this component owns.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-kbz.conf";
/// Modules file.
pub const MODULES_FILE: &str = "/etc/modules-load.d/kbz.conf";
/// apt proxy file.
pub const APT_PROXY_FILE: &str = "/etc/apt/apt.conf.d/01kbz-proxy";
/// chrony sources file.
pub const CHRONY_FILE: &str = "/etc/chrony/sources.d/kbz.sources";

/// Module 1.
#[derive(Debug, Default, Clone, Copy)]
pub struct Base;

impl Base {
    /// The /etc/hosts content for the inventory.
    pub fn hosts_file(ctx: &Context) -> String {
        let mut s = String::from(
            "# Managed by kbz (module 1, base): edit the inventory, not this file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n",
        );
        for h in &ctx.inventory.hosts {
            s.push_str(&format!("{}\t{}\n", h.ip, h.hostname));
        }
        s
    }

    fn sysctl_file() -> String {
        let mut s = String::from("# Managed by kbz (module 1, base).\n");
        for (k, v) in SYSCTLS {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    }

    fn modules_file() -> String {
        let mut s = String::from("# Managed by kbz (module 1, base).\n");
        for m in MODULES {
            s.push_str(&format!("{m}\n"));
        }
        s
    }
}

impl Component for Base {
    fn name(&self) -> &'static str {
        "base"
    }

    fn module(&self) -> u8 {
        1
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let cfg = &ctx.config.cluster;
        let mut r = Vec::new();
        // The proxy comes first: every package below is fetched through it.
        r.push(match &cfg.apt_proxy {
            Some(url) => Resource::file(
                APT_PROXY_FILE,
                format!("// Managed by kbz (module 1, base).\nAcquire::http::Proxy \"{url}\";\n"),
                0o644,
            ),
            None => Resource::absent_file(APT_PROXY_FILE),
        });
        r.push(Resource::SwapOff);
        r.push(Resource::file(MODULES_FILE, Base::modules_file(), 0o644));
        for m in MODULES {
            r.push(Resource::KernelModule { name: (*m).into() });
        }
        r.push(Resource::file(SYSCTL_FILE, Base::sysctl_file(), 0o644));
        for (k, v) in SYSCTLS {
            r.push(Resource::Sysctl {
                key: (*k).into(),
                value: (*v).into(),
            });
        }
        // The running hostname first, so its undo (reading the restored /etc/hostname)
        // runs after the file is restored.
        r.push(Resource::Command {
            id: "hostname".into(),
            script: format!("hostname {}", host.hostname),
            unless: Some(format!("[ \"$(hostname)\" = {} ]", host.hostname)),
            creates: None,
            undo: Some("hostname -F /etc/hostname".into()),
        });
        r.push(Resource::file(
            "/etc/hostname",
            format!("{}\n", host.hostname),
            0o644,
        ));
        let hosts = ctx.shared("base/etc-hosts", || Base::hosts_file(ctx));
        r.push(Resource::file("/etc/hosts", hosts.as_bytes(), 0o644));
        for p in PACKAGES
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.extra_packages.iter().cloned())
        {
            r.push(Resource::package(&p));
        }
        let sources = if cfg.ntp_servers.is_empty() {
            Resource::absent_file(CHRONY_FILE)
        } else {
            let mut s = String::from("# Managed by kbz (module 1, base).\n");
            for n in &cfg.ntp_servers {
                s.push_str(&format!("server {n} iburst\n"));
            }
            Resource::file(CHRONY_FILE, s, 0o644)
        };
        r.push(sources);
        r.push(Resource::service("chrony", &[CHRONY_FILE]));
        Ok(r)
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        // Only kbz's own drop-in files go: the hostname, /etc/hosts, swap and packages stay,
        // because other software on the host may rely on them.
        Ok(vec![
            Resource::absent_file(APT_PROXY_FILE),
            Resource::absent_file(MODULES_FILE),
            Resource::absent_file(SYSCTL_FILE),
            Resource::absent_file(CHRONY_FILE),
        ])
    }

    fn health_probes(&self, _ctx: &Context, _host: &Host) -> Vec<Probe> {
        health::probes()
    }

    fn health_checks(&self, _ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        health::checks(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::{Config, Inventory, Role, Secrets};

    fn ctx(proxy: Option<&str>) -> Context {
        let inv = Inventory {
            path: "servers.tsv".into(),
            hosts: vec![
                Host::new("db1", "192.0.2.11".parse().expect("ip"), &[Role::Etcd]),
                Host::new("db2", "192.0.2.12".parse().expect("ip"), &[Role::Etcd]),
            ],
        };
        let mut cfg = Config::default();
        cfg.cluster.apt_proxy = proxy.map(String::from);
        Context::new(inv, cfg, Secrets::in_memory())
    }

    #[test]
    fn hosts_file_lists_every_inventory_host() {
        let h = Base::hosts_file(&ctx(None));
        assert!(
            h.contains("192.0.2.11\tdb1\n") && h.contains("192.0.2.12\tdb2\n"),
            "{h}"
        );
        assert!(h.contains("127.0.0.1\tlocalhost"));
    }

    #[test]
    fn apt_proxy_file_follows_config() {
        let c = ctx(Some("http://10.0.0.1:3142"));
        let host = c.inventory.hosts[0].clone();
        let r = Base.desired(&c, &host).expect("desired");
        match &r[0] {
            Resource::File {
                path,
                content,
                present,
                ..
            } => {
                assert_eq!(path, APT_PROXY_FILE);
                assert!(*present);
                assert!(String::from_utf8_lossy(content)
                    .contains("Acquire::http::Proxy \"http://10.0.0.1:3142\";"));
            }
            o => panic!("first resource must be the apt proxy, got {o:?}"),
        }
        let r = Base.desired(&ctx(None), &host).expect("desired");
        assert_eq!(r[0], Resource::absent_file(APT_PROXY_FILE));
    }
}
