//! The allow-lists of kbz.toml's free-text values (E008 with the line and a fix): every
//! string that reaches a file or a command on a host, or the controller's own SSH settings.
//! Typed values (addresses, CIDRs, numbers) and closed lists (flavor, add-ons, VIP names)
//! are checked in `Config::check`; the characters are checked here, by [`crate::allow`].

use super::{key_line, Config};
use crate::allow;
use kbz_errors::{Code, Diagnostic};

/// Every allow-list problem of `cfg`, one E008 each.
pub(super) fn check(cfg: &Config, path: &str, text: Option<&str>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut bad = |table: &str, key: &str, res: Result<(), String>, fix: &str| {
        if let Err(msg) = res {
            out.push(
                Diagnostic::new(Code::E008, msg)
                    .at(path, text.and_then(|t| key_line(t, table, key)))
                    .hint(fix),
            );
        }
    };
    let c = &cfg.cluster;
    if !c.name.trim().is_empty() {
        bad(
            "cluster",
            "name",
            allow::cluster_name(&c.name),
            "use letters, digits, spaces, `.`, `_` and `-`, e.g. `name = \"prod-eu\"`",
        );
    }
    if let Some(p) = &c.apt_proxy {
        bad(
            "cluster",
            "apt_proxy",
            allow::http_url("[cluster] apt_proxy", p),
            "write it like `apt_proxy = \"http://192.0.2.5:3142\"` (scheme, host, port, \
             optional path), or remove the line",
        );
    }
    for n in &c.ntp_servers {
        bad(
            "cluster",
            "ntp_servers",
            allow::ntp_server(n).map_err(|e| format!("[cluster] ntp_servers: {e}")),
            "list host names or addresses, e.g. `ntp_servers = [\"0.debian.pool.ntp.org\", \
             \"192.0.2.1\"]`",
        );
    }
    for p in &c.extra_packages {
        bad(
            "cluster",
            "extra_packages",
            allow::debian_package(p).map_err(|e| format!("[cluster] extra_packages: {e}")),
            "list Debian package names as `apt-cache policy NAME` knows them, e.g. \
             `extra_packages = [\"htop\", \"postgresql-client-16\"]`",
        );
    }
    for (key, v) in &cfg.versions {
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if !key_ok {
            bad(
                "versions",
                key,
                Err(format!(
                    "[versions] `{}` is not a component name",
                    key.escape_default()
                )),
                "name the component in lowercase, e.g. `postgres = \"16\"`",
            );
        }
        bad(
            "versions",
            key,
            allow::version(&format!("[versions] {}", key.escape_default()), v),
            "write a version like `postgres = \"16\"` or `kubeadm = \"1.31.4-1.1\"`",
        );
    }
    for (key, v) in [
        ("app_user", &cfg.postgres.app_user),
        ("app_database", &cfg.postgres.app_database),
    ] {
        bad(
            "postgres",
            key,
            allow::pg_name(&format!("[postgres] {key}"), v),
            "use lowercase letters, digits and `_`, e.g. `app_user = \"shop\"` (not `postgres`, \
             `replicator`, `rewind_user` or a `pg_` name)",
        );
    }
    for (key, v) in [
        ("app_user", &cfg.rabbitmq.app_user),
        ("vhost", &cfg.rabbitmq.vhost),
    ] {
        bad(
            "rabbitmq",
            key,
            super::rabbitmq::check_name(&format!("[rabbitmq] {key}"), v),
            "use lowercase letters, digits, `_` and `-`, e.g. `vhost = \"shop\"`",
        );
    }
    for (key, v) in [
        ("app_user", &cfg.mariadb.app_user),
        ("app_database", &cfg.mariadb.app_database),
    ] {
        bad(
            "mariadb",
            key,
            super::mariadb::check_name(&format!("[mariadb] {key}"), v),
            "use lowercase letters, digits and `_`, e.g. `app_database = \"shop\"`",
        );
    }
    if let Some(m) = &cfg.kubernetes.registry_mirror {
        bad(
            "kubernetes",
            "registry_mirror",
            allow::http_url("[kubernetes] registry_mirror", m),
            "write it like `registry_mirror = \"https://registry.example.internal:5000\"`",
        );
    }
    if let Some(h) = &cfg.kubernetes.rancher_hostname {
        bad(
            "kubernetes",
            "rancher_hostname",
            allow::dns_name("[kubernetes] rancher_hostname", h),
            "write it like `rancher_hostname = \"rancher.example.internal\"`",
        );
    }
    let s = &cfg.ssh;
    for (key, v) in [("key", &s.key), ("known_hosts", &s.known_hosts)] {
        if let Some(v) = v {
            bad(
                "ssh",
                key,
                allow::local_path(&format!("[ssh] {key}"), v),
                "write the path of a file on this machine, e.g. `key = \"~/.ssh/id_ed25519\"`",
            );
        }
    }
    if let Some(j) = &s.jump_host {
        bad(
            "ssh",
            "jump_host",
            jump_host(j),
            "write it like `jump_host = \"ops@bastion.example.com:22\"`",
        );
    }
    out
}

/// `[user@]host[:port]` with an SSH user name, a DNS name or address, a port.
fn jump_host(s: &str) -> Result<(), String> {
    let (user, rest) = match s.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, s),
    };
    if let Some(u) = user {
        crate::inventory::check_ssh_user(u).map_err(|(m, _)| format!("[ssh] jump_host: {m}"))?;
    }
    let url = format!("http://{rest}");
    allow::http_url("[ssh] jump_host", &url).map_err(|e| e.replace(&url, s))?;
    if rest.contains('/') {
        return Err(format!(
            "[ssh] jump_host `{}` holds a path",
            s.escape_default()
        ));
    }
    Ok(())
}
