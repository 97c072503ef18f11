//! The text files the lab writes: the inventory, kbz.toml, known_hosts, and the guests'
//! /etc/hosts. Pure functions, so their exact shape is unit-tested.

use std::net::Ipv4Addr;
use std::path::Path;

/// A host as the generated files see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHost {
    /// Hostname.
    pub name: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Inventory roles.
    pub roles: Vec<String>,
}

/// Roles of host `index` (1-based): the first three carry the quorum services, the third
/// also keeps kbz-backup's repository (co-located, so drills run next to etcd and Redis
/// binaries), later hosts are Kubernetes workers.
pub fn roles_for(index: u8) -> Vec<String> {
    let roles: &[&str] = match index {
        1 | 2 => &["lb", "etcd", "postgres", "redis", "rabbitmq", "mariadb"],
        3 => &[
            "lb", "etcd", "postgres", "redis", "rabbitmq", "mariadb", "backup",
        ],
        _ => &["k8s-worker"],
    };
    roles.iter().map(|r| r.to_string()).collect()
}

/// `servers.tsv`.
pub fn servers_tsv(hosts: &[FileHost]) -> String {
    let mut out = String::from("hostname\tip\troles\tssh_user\tssh_port\n");
    for h in hosts {
        out.push_str(&format!(
            "{}\t{}\t{}\troot\t22\n",
            h.name,
            h.ip,
            h.roles.join(",")
        ));
    }
    out
}

/// `kbz.toml` for the lab.
pub fn kbz_toml(key: &Path, known_hosts: &Path) -> String {
    format!(
        "[cluster]\nname = \"kbzlab\"\nsubnet = \"10.77.0.0/24\"\napt_proxy = \"http://10.77.0.1:3142\"\n\n\
         [ssh]\nkey = \"{}\"\nknown_hosts = \"{}\"\n\n\
         # The e2e runs with kbz's own CA: etcd peer and client TLS, PostgreSQL TLS.\n\
         [security]\ntls = true\n\n\
         [vips]\npostgres = \"10.77.0.100\"\nredis = \"10.77.0.101\"\nmariadb = \"10.77.0.103\"\nrabbitmq = \"10.77.0.104\"\n\n\
         # The lab's hosts share the controller's disk with its build trees (CI saw 3971 MiB free).\n\
         [preflight]\nroot_disk_mb = 1024\n\n\
         [preflight.roles.postgres]\ndisk_mb = 1024\n\n\
         [preflight.roles.rabbitmq]\ndisk_mb = 1024\n\n\
         [preflight.roles.mariadb]\ndisk_mb = 1024\n",
        toml_escape(&key.display().to_string()),
        toml_escape(&known_hosts.display().to_string()),
    )
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// known_hosts lines for one host: each `*.pub` host key (`type base64 [comment]`) keyed by IP.
pub fn known_hosts_lines(ip: Ipv4Addr, pubkeys: &[String]) -> String {
    let mut out = String::new();
    for key in pubkeys {
        let mut parts = key.split_whitespace();
        if let (Some(kind), Some(blob)) = (parts.next(), parts.next()) {
            out.push_str(&format!("{ip} {kind} {blob}\n"));
        }
    }
    out
}

/// The guests' /etc/hosts: loopback names and every lab host by its bridge address.
pub fn etc_hosts(hosts: &[FileHost]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n# kbz lab hosts\n",
    );
    for h in hosts {
        out.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    out
}

/// The lab's own apt-cacher-ng configuration: bridge address only, caches under `cache`,
/// Debian (and its security archive) fetched from `mirror` whichever mirror a host names.
pub fn acng_conf(cache: &Path, run_dir: &Path, addr: Ipv4Addr, port: u16, mirror: &str) -> String {
    let mirror = mirror.trim_end_matches('/');
    let security = mirror.strip_suffix("/debian").unwrap_or(mirror);
    format!(
        "# Written by `cargo xtask lab` for the lab's own apt-cacher-ng.\n\
         ForeGround: 1\n\
         BindAddress: {addr}\n\
         Port: {port}\n\
         CacheDir: {cache}\n\
         LogDir: {run}\n\
         SocketPath: {run}/socket\n\
         PidFile: {run}/pid\n\
         SupportDir: /usr/lib/apt-cacher-ng\n\
         ReportPage: acng-report.html\n\
         UnbufferLogs: 1\n\
         ExThreshold: 4\n\
         Remap-debrep: file:deb_mirror*.gz /debian ; {mirror}/\n\
         Remap-secdeb: security.debian.org security.debian.org/debian-security \
         deb.debian.org/debian-security /debian-security ; {security}/debian-security/\n",
        cache = cache.display(),
        run = run_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u8) -> Vec<FileHost> {
        (1..=n)
            .map(|i| FileHost {
                name: format!("kbzlab-h{i}"),
                ip: Ipv4Addr::new(10, 77, 0, 10 + i),
                roles: roles_for(i),
            })
            .collect()
    }

    #[test]
    fn inventory_has_header_and_roles() {
        assert_eq!(
            servers_tsv(&hosts(4)),
            "hostname\tip\troles\tssh_user\tssh_port\n\
             kbzlab-h1\t10.77.0.11\tlb,etcd,postgres,redis,rabbitmq,mariadb\troot\t22\n\
             kbzlab-h2\t10.77.0.12\tlb,etcd,postgres,redis,rabbitmq,mariadb\troot\t22\n\
             kbzlab-h3\t10.77.0.13\tlb,etcd,postgres,redis,rabbitmq,mariadb,backup\troot\t22\n\
             kbzlab-h4\t10.77.0.14\tk8s-worker\troot\t22\n"
        );
    }

    #[test]
    fn config_has_the_agreed_shape() {
        let toml = kbz_toml(
            Path::new("/w/target/lab/id_ed25519"),
            Path::new("/w/target/lab/known_hosts"),
        );
        assert_eq!(
            toml,
            "[cluster]\nname = \"kbzlab\"\nsubnet = \"10.77.0.0/24\"\napt_proxy = \"http://10.77.0.1:3142\"\n\n\
             [ssh]\nkey = \"/w/target/lab/id_ed25519\"\nknown_hosts = \"/w/target/lab/known_hosts\"\n\n\
             # The e2e runs with kbz's own CA: etcd peer and client TLS, PostgreSQL TLS.\n\
             [security]\ntls = true\n\n\
             [vips]\npostgres = \"10.77.0.100\"\nredis = \"10.77.0.101\"\nmariadb = \"10.77.0.103\"\nrabbitmq = \"10.77.0.104\"\n\n\
             # The lab's hosts share the controller's disk with its build trees (CI saw 3971 MiB free).\n\
             [preflight]\nroot_disk_mb = 1024\n\n\
             [preflight.roles.postgres]\ndisk_mb = 1024\n\n\
         [preflight.roles.rabbitmq]\ndisk_mb = 1024\n\n\
         [preflight.roles.mariadb]\ndisk_mb = 1024\n"
        );
    }

    #[test]
    fn known_hosts_drop_comments() {
        let keys = vec![
            "ssh-ed25519 AAAAC3Nz root@vm".to_string(),
            "ecdsa-sha2-nistp256 AAAAE2Vj".to_string(),
        ];
        assert_eq!(
            known_hosts_lines(Ipv4Addr::new(10, 77, 0, 11), &keys),
            "10.77.0.11 ssh-ed25519 AAAAC3Nz\n10.77.0.11 ecdsa-sha2-nistp256 AAAAE2Vj\n"
        );
    }

    #[test]
    fn apt_proxy_fetches_from_the_reachable_mirror() {
        let conf = acng_conf(
            Path::new("/var/cache/x"),
            Path::new("/run/x"),
            Ipv4Addr::new(10, 77, 0, 1),
            3142,
            "http://deb.debian.org/debian",
        );
        assert!(
            conf.contains("BindAddress: 10.77.0.1\nPort: 3142\n"),
            "{conf}"
        );
        assert!(conf.contains("; http://deb.debian.org/debian/\n"), "{conf}");
        // Every transfer is in the log at once: the e2e reads it right after an install.
        assert!(conf.contains("\nUnbufferLogs: 1\n"), "{conf}");
        assert!(
            conf.contains("; http://deb.debian.org/debian-security/\n"),
            "{conf}"
        );
    }

    #[test]
    fn etc_hosts_lists_loopback_and_lab() {
        let text = etc_hosts(&hosts(2));
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.77.0.11\tkbzlab-h1\n10.77.0.12\tkbzlab-h2\n"));
    }
}
