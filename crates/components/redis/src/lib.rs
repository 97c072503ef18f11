//! kbz-redis (module 6): a Redis master with replicas and one Sentinel per Redis host, built
//! so that Sentinel really promotes a replica when the master dies, and so that a re-run of
//! kbz never undoes what Sentinel did.
//!
//! # Who owns which file
//! Redis and Sentinel rewrite their own configuration files at run time: Sentinel records its
//! state (myid, epochs, the monitored master, replicas, other Sentinels) in sentinel.conf, and
//! on every failover it makes Redis run `CONFIG REWRITE`, which records `replicaof` in
//! redis.conf together with a copy of every non-default setting. A file kbz managed byte for
//! byte would therefore differ after every failover, and "fixing" it would restart the daemon,
//! wipe Sentinel's state or point a promoted master back at the old one. So:
//!
//! - `/etc/redis/redis.conf` and `/etc/redis/sentinel.conf` belong to the daemons. kbz writes
//!   each once (a marker comment, no settings) by a guarded command and never again.
//! - kbz's settings live in `/etc/redis/kbz-redis.conf` and `/etc/redis/kbz-sentinel.conf`,
//!   which systemd drop-ins pass with `--include` after the main file, so they win over the
//!   copies the daemons append. They carry no `replicaof`, no `sentinel monitor` and nothing
//!   that accumulates across files (`save`, `user`, `rename-command`, `loadmodule`).
//! - Passwords are the default user's, set in ACL files holding only their SHA-256 (what
//!   `requirepass` does; with `requirepass` CONFIG REWRITE would persist a `user default` line
//!   that outlives a password change).
//! - The monitored master and its parameters are set at run time (`SENTINEL MONITOR`,
//!   `SENTINEL SET`), which Sentinel persists in its own file.
//!
//! # Invariants
//! 1. Sentinel is the authority on the master. The first Redis host of the inventory is the
//!    master only at bootstrap (no Sentinel monitors yet, no node has replicas).
//! 2. kbz sends `REPLICAOF` only to a node that is a master without replicas and is not the
//!    chosen master, re-checked on the host right before; never to a replica, never to a master
//!    with replicas (two masters with replicas are reported as E038, not resolved).
//! 3. A converged re-run only reads: no file differs, nothing restarts, no Redis or Sentinel
//!    state changes, also after a failover.
//! 4. Promotion cannot be blocked by configuration: quorum is a majority of the Sentinels,
//!    every Sentinel has its own myid, announces and binds its inventory address, all
//!    addresses are IPs, every replica has a non-zero priority, and authentication is on
//!    everywhere with the passwords Sentinel needs (`masterauth`, `auth-pass`, `sentinel-pass`).
//! 5. The cluster step ends only when every replica streams from the master and every Sentinel
//!    names the same master, knows the others and the replicas, and passes `SENTINEL CKQUORUM`.
//!
//! Uninstall stops and disables both services, purges `redis-server` and `redis-sentinel` and
//! removes kbz's files and the daemons' own configuration files. The data in /var/lib/redis
//! stays, and so does `redis-tools` (Debian's purge of it deletes /var/lib/redis).

pub mod backup;
pub mod client;
pub mod cluster;
pub mod layout;
pub mod observe;
pub mod render;
pub mod scripts;

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Listen, Probe,
};
use kbz_core::shell::quote;
use kbz_core::{Context, Host, Resource, Role};

pub use layout::Layout;
use observe::SentinelParams;

/// The name Sentinel monitors the master under.
pub const MASTER_NAME: &str = "kbz";
/// Secret: the Redis password (default user, `masterauth`, Sentinel's `auth-pass`).
pub const SECRET_REDIS: &str = "redis_password";
/// Secret: the Sentinels' password (their default user and `sentinel-pass`).
pub const SECRET_SENTINEL: &str = "redis_sentinel_password";
/// A master unreachable this long is subjectively down.
pub const DOWN_AFTER_MS: u64 = 5_000;
/// Failover timeout: a failed attempt is retried after twice this.
pub const FAILOVER_TIMEOUT_MS: u64 = 10_000;
/// Replicas re-pointed at a new master at a time.
pub const PARALLEL_SYNCS: u64 = 1;
/// A master refuses writes with fewer replicas in sync than this.
pub const MIN_REPLICAS_TO_WRITE: u32 = 1;
/// Seconds of lag after which a replica no longer counts as in sync.
pub const MIN_REPLICAS_MAX_LAG: u32 = 10;
/// Every node's replica priority; never 0, which would make a replica unpromotable.
pub const REPLICA_PRIORITY: u32 = 100;
/// Packages installed on Redis hosts (`redis-tools` brings `redis-cli`, which kbz's scripts use).
pub const PACKAGES: &[&str] = &["redis-server", "redis-sentinel", "redis-tools"];
/// Packages purged by uninstall. `redis-tools` stays: Debian's purge of it deletes
/// /var/lib/redis, /var/log/redis, /etc/redis and the `redis` user, and the data must stay.
pub const UNINSTALLED_PACKAGES: &[&str] = &["redis-server", "redis-sentinel"];
/// The Redis unit.
pub const REDIS_SERVICE: &str = "redis-server";
/// The Sentinel unit.
pub const SENTINEL_SERVICE: &str = "redis-sentinel";

/// The Sentinel parameters for `n` Sentinels.
pub fn sentinel_params(n: usize) -> SentinelParams {
    SentinelParams {
        quorum: render::quorum(n) as u64,
        down_after_ms: DOWN_AFTER_MS,
        failover_timeout_ms: FAILOVER_TIMEOUT_MS,
        parallel_syncs: PARALLEL_SYNCS,
    }
}

/// Module 6: Redis + Sentinel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Redis;

/// The command that writes a daemon's main file once, when it is not kbz's yet: stop the
/// daemon (a running Sentinel would rewrite the file under us), keep the packaged file for
/// rollback, write the marker file, start the daemon again.
fn main_file_command(id: &str, path: &str, marker: &str, content: &str, service: &str) -> Resource {
    let f = quote(path);
    let orig = quote(&format!("{path}.kbz-orig"));
    let dir = quote(
        std::path::Path::new(path)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/etc/redis"),
    );
    Resource::Command {
        id: id.into(),
        script: format!(
            "set -e\nif [ -e {f} ] && [ ! -e {orig} ]; then cp -p {f} {orig}; fi\n\
             systemctl stop {service}.service || true\n\
             t=$(mktemp {dir}/.kbz.XXXXXX)\ncat > \"$t\" <<'KBZ_MAIN_FILE'\n{content}KBZ_MAIN_FILE\n\
             chmod 640 \"$t\"\nchown {owner} \"$t\"\nmv -fT \"$t\" {f}\n\
             systemctl start {service}.service\n",
            owner = render::MAIN_OWNER,
        ),
        unless: Some(format!("grep -qxF {} {f}", quote(marker))),
        creates: None,
        undo: Some(format!("if [ -e {orig} ]; then mv -f {orig} {f}; fi")),
    }
}

/// The `systemctl daemon-reload` that makes systemd use the drop-ins, skipped when the loaded
/// units already start the daemons with kbz's `--include`.
fn daemon_reload(layout: &Layout, host: &Host) -> Resource {
    let loaded = |unit: &str, argv: Vec<String>| {
        format!(
            "systemctl show -p ExecStart --value {unit}.service | grep -qF {}",
            quote(&format!("argv[]={} ;", argv.join(" ")))
        )
    };
    Resource::Command {
        id: "redis-daemon-reload".into(),
        script: "systemctl daemon-reload".into(),
        unless: Some(format!(
            "{} && {}",
            loaded(REDIS_SERVICE, render::redis_exec_start(layout, host)),
            loaded(SENTINEL_SERVICE, render::sentinel_exec_start(layout, host))
        )),
        creates: None,
        undo: Some("systemctl daemon-reload".into()),
    }
}

fn dropin_dir(p: &str) -> String {
    std::path::Path::new(p)
        .parent()
        .and_then(|d| d.to_str())
        .unwrap_or("/etc/systemd/system")
        .to_string()
}

#[async_trait]
impl Component for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn module(&self) -> u8 {
        6
    }

    fn secret_names(&self) -> Vec<String> {
        vec![SECRET_REDIS.into(), SECRET_SENTINEL.into()]
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Redis)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let l = Layout::debian();
        let mut r: Vec<Resource> = PACKAGES.iter().map(|p| Resource::package(p)).collect();
        for d in [layout::REDIS_DROPIN, layout::SENTINEL_DROPIN] {
            r.push(Resource::Directory {
                path: dropin_dir(d),
                mode: 0o755,
                owner: "root:root".into(),
            });
        }
        for f in render::files(ctx, host, &l)? {
            r.push(Resource::File {
                path: f.path,
                content: f.content.into_bytes(),
                mode: f.mode,
                owner: f.owner,
                present: true,
            });
        }
        r.push(daemon_reload(&l, host));
        r.push(main_file_command(
            "redis-main-conf",
            layout::REDIS_MAIN,
            render::REDIS_MAIN_MARKER,
            &render::redis_main_stub(&l, host)?,
            REDIS_SERVICE,
        ));
        r.push(main_file_command(
            "sentinel-main-conf",
            layout::SENTINEL_MAIN,
            render::SENTINEL_MAIN_MARKER,
            &render::sentinel_main_stub(&l, host)?,
            SENTINEL_SERVICE,
        ));
        // The main files are deliberately not in restart_on: the daemons rewrite them.
        r.push(Resource::service(
            REDIS_SERVICE,
            &[layout::REDIS_ACL, layout::REDIS_KBZ, layout::REDIS_DROPIN],
        ));
        r.push(Resource::service(
            SENTINEL_SERVICE,
            &[
                layout::SENTINEL_ACL,
                layout::SENTINEL_KBZ,
                layout::SENTINEL_DROPIN,
            ],
        ));
        Ok(r)
    }

    fn rolling(&self) -> bool {
        // One host at a time: a configuration change never restarts every Redis or every
        // Sentinel at once.
        true
    }

    async fn host_ready(
        &self,
        ctx: &Context,
        host: &HostExec,
        changed: bool,
    ) -> Result<(), ComponentError> {
        cluster::host_ready(ctx, host, changed, &Layout::debian()).await
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = Vec::new();
        for s in [SENTINEL_SERVICE, REDIS_SERVICE] {
            r.push(Resource::stopped_service(s));
        }
        for p in UNINSTALLED_PACKAGES {
            r.push(Resource::absent_package(p));
        }
        // The daemons' own files hold copies of the passwords after CONFIG REWRITE; the purge
        // removes them as conffiles, and these entries make sure of it.
        for f in [
            layout::REDIS_MAIN,
            layout::SENTINEL_MAIN,
            layout::REDIS_ACL,
            layout::REDIS_KBZ,
            layout::REDIS_PASS,
            layout::SENTINEL_ACL,
            layout::SENTINEL_KBZ,
            layout::SENTINEL_PASS,
            layout::REDIS_DROPIN,
            layout::SENTINEL_DROPIN,
            "/etc/redis/redis.conf.kbz-orig",
            "/etc/redis/sentinel.conf.kbz-orig",
        ] {
            r.push(Resource::absent_file(f));
        }
        let dirs: Vec<String> = [layout::REDIS_DROPIN, layout::SENTINEL_DROPIN]
            .iter()
            .map(|d| quote(&dropin_dir(d)))
            .collect();
        r.push(Resource::Command {
            id: "redis-dropin-dirs-absent".into(),
            script: format!("rmdir {} 2>/dev/null || true", dirs.join(" ")),
            unless: Some(
                dirs.iter()
                    .map(|d| format!("[ ! -d {d} ]"))
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
            creates: None,
            undo: None,
        });
        r.push(Resource::Command {
            id: "redis-daemon-reload-uninstall".into(),
            script: "systemctl daemon-reload".into(),
            unless: Some(format!(
                "! systemctl show -p ExecStart --value {REDIS_SERVICE}.service {SENTINEL_SERVICE}.service 2>/dev/null | grep -qF -- '--include /etc/redis/kbz-'"
            )),
            creates: None,
            undo: None,
        });
        Ok(r)
    }

    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        cluster::converge(ctx, hosts, &Layout::debian())
            .await
            .map(|o| o.changes)
    }

    fn health_probes(&self, _ctx: &Context, host: &Host) -> Vec<Probe> {
        vec![Probe::new(
            "gather",
            scripts::gather(&Layout::debian(), host),
        )]
    }

    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        cluster::health_checks(ctx, raw)
    }

    /// Redis and Sentinel on the host's address and loopback ([`Layout::debian`]).
    fn listens(&self, _ctx: &Context, host: &Host) -> Vec<Listen> {
        let l = Layout::debian();
        let addrs: Vec<std::net::IpAddr> = l
            .bind(host)
            .split(' ')
            .filter_map(|a| a.parse().ok())
            .collect();
        // Sentinel is redis-server started under another name; either name may show.
        let owners = ["redis-server", "redis-sentinel", "redis-check-rdb"];
        vec![
            Listen::new("Redis member", l.redis_port, &addrs, &owners)
                .marker(layout::REDIS_DROPIN)
                .auth("password (requirepass / ACL)"),
            Listen::new("Redis Sentinel", l.sentinel_port, &addrs, &owners)
                .marker(layout::SENTINEL_DROPIN)
                .auth("Sentinel password (ACL)"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::{Config, Inventory, Secrets};

    fn ctx() -> Context {
        let inv = Inventory::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../examples/servers.tsv"
        )))
        .expect("inventory");
        let cfg = Config::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../examples/kbz.toml"
        )))
        .expect("config");
        Context::new(inv, cfg, Secrets::placeholders(Redis.secret_names()))
    }

    fn file<'a>(r: &'a [Resource], path: &str) -> (&'a str, u32, &'a str) {
        r.iter()
            .find_map(|x| match x {
                Resource::File {
                    path: p,
                    content,
                    mode,
                    owner,
                    ..
                } if p == path => Some((
                    std::str::from_utf8(content).expect("utf8"),
                    *mode,
                    owner.as_str(),
                )),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no file {path}"))
    }

    fn directive<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .collect()
    }

    fn redis_hosts(c: &Context) -> Vec<Host> {
        c.inventory
            .with_role(Role::Redis)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn applies_to_the_redis_role_only() {
        let c = ctx();
        let names: Vec<&str> = c
            .inventory
            .hosts
            .iter()
            .filter(|h| Redis.applies_to(h))
            .map(|h| h.hostname.as_str())
            .collect();
        assert_eq!(names, ["db1", "db2", "db3"]);
    }

    #[test]
    fn sentinel_myids_are_distinct_across_hosts() {
        let c = ctx();
        let mut ids = std::collections::BTreeSet::new();
        for h in redis_hosts(&c) {
            let r = Redis.desired(&c, &h).expect("desired");
            let (s, _, _) = file(&r, layout::SENTINEL_KBZ);
            let id = directive(s, "sentinel myid");
            assert_eq!(id.len(), 1, "{s}");
            assert_eq!(id[0].len(), 40);
            assert!(id[0].chars().all(|c| c.is_ascii_hexdigit()));
            assert!(
                ids.insert(id[0].to_string()),
                "duplicate myid on {}",
                h.hostname
            );
        }
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn announce_and_bind_use_the_host_address_not_loopback_only() {
        let c = ctx();
        for h in redis_hosts(&c) {
            let r = Redis.desired(&c, &h).expect("desired");
            let ip = h.ip.to_string();
            let (s, _, _) = file(&r, layout::SENTINEL_KBZ);
            assert_eq!(directive(s, "sentinel announce-ip"), [ip.as_str()]);
            let (rc, _, _) = file(&r, layout::REDIS_KBZ);
            assert_eq!(directive(rc, "replica-announce-ip"), [ip.as_str()]);
            for text in [s, rc] {
                let bind = directive(text, "bind");
                assert_eq!(bind.len(), 1);
                let addrs: Vec<&str> = bind[0].split_whitespace().collect();
                assert_eq!(addrs.first(), Some(&ip.as_str()), "{text}");
                assert!(addrs.contains(&"127.0.0.1"));
                assert!(addrs.iter().any(|a| a
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| !a.is_loopback())));
                // Addresses, never hostnames.
                assert!(addrs.iter().all(|a| a.parse::<std::net::IpAddr>().is_ok()));
            }
            assert_eq!(directive(s, "sentinel resolve-hostnames"), ["no"]);
        }
    }

    #[test]
    fn replicas_stay_promotable_and_writes_need_a_replica() {
        let c = ctx();
        for h in redis_hosts(&c) {
            let r = Redis.desired(&c, &h).expect("desired");
            let (rc, _, _) = file(&r, layout::REDIS_KBZ);
            let prio: Vec<u32> = directive(rc, "replica-priority")
                .iter()
                .map(|p| p.parse().expect("number"))
                .collect();
            assert_eq!(prio, [100]);
            assert!(prio[0] > 0);
            assert!(directive(rc, "slave-priority").is_empty());
            assert_eq!(directive(rc, "min-replicas-to-write"), ["1"]);
            assert_eq!(directive(rc, "min-replicas-max-lag"), ["10"]);
            assert_eq!(directive(rc, "appendonly"), ["yes"]);
            // Replication belongs to Sentinel: kbz's file never says who the master is.
            assert!(directive(rc, "replicaof").is_empty());
            assert!(directive(rc, "slaveof").is_empty());
            // Nothing that would accumulate with the copies CONFIG REWRITE appends.
            for k in [
                "save",
                "user",
                "rename-command",
                "loadmodule",
                "include",
                "requirepass",
            ] {
                assert!(directive(rc, k).is_empty(), "{k} in kbz-redis.conf");
            }
        }
    }

    #[test]
    fn quorum_is_two_of_three_and_sentinel_timings_are_fast() {
        let p = sentinel_params(redis_hosts(&ctx()).len());
        assert_eq!(p.quorum, 2);
        assert_eq!(p.down_after_ms, 5000);
        assert!(p.failover_timeout_ms <= 30_000);
        assert_eq!(p.parallel_syncs, 1);
    }

    #[test]
    fn authentication_is_on_everywhere_and_protected_mode_agrees() {
        let c = ctx();
        for h in redis_hosts(&c) {
            let r = Redis.desired(&c, &h).expect("desired");
            for (conf, acl, secret) in [
                (layout::REDIS_KBZ, layout::REDIS_ACL, SECRET_REDIS),
                (layout::SENTINEL_KBZ, layout::SENTINEL_ACL, SECRET_SENTINEL),
            ] {
                let (text, mode, owner) = file(&r, conf);
                assert_eq!(directive(text, "protected-mode"), ["yes"]);
                assert_eq!(directive(text, "aclfile"), [acl]);
                assert_eq!((mode, owner), (0o640, "root:redis"));
                let (a, amode, aowner) = file(&r, acl);
                assert_eq!((amode, aowner), (0o640, "root:redis"));
                let pw = c.secret(secret).expect("secret");
                assert_eq!(
                    a.trim(),
                    format!(
                        "user default on sanitize-payload #{} ~* &* +@all",
                        kbz_core::shell::sha256_hex(pw.expose().as_bytes())
                    )
                );
            }
            let pw = c.secret(SECRET_REDIS).expect("secret");
            let (rc, _, _) = file(&r, layout::REDIS_KBZ);
            assert_eq!(
                directive(rc, "masterauth"),
                [format!("\"{}\"", pw.expose()).as_str()]
            );
            let spw = c.secret(SECRET_SENTINEL).expect("secret");
            let (s, _, _) = file(&r, layout::SENTINEL_KBZ);
            assert_eq!(
                directive(s, "sentinel sentinel-pass"),
                [format!("\"{}\"", spw.expose()).as_str()]
            );
            // No per-master line: Sentinel's rewrite would duplicate it into sentinel.conf.
            for k in [
                "sentinel monitor",
                "sentinel auth-pass",
                "sentinel known-replica",
            ] {
                assert!(directive(s, k).is_empty(), "{k} in kbz-sentinel.conf");
            }
            for p in [layout::REDIS_PASS, layout::SENTINEL_PASS] {
                let (_, mode, owner) = file(&r, p);
                assert_eq!((mode, owner), (0o600, "root:root"));
            }
        }
    }

    #[test]
    fn passwords_never_reach_a_command_line() {
        let c = ctx();
        let secrets: Vec<String> = Redis
            .secret_names()
            .iter()
            .map(|n| c.secret(n).expect("secret").expose().to_string())
            .collect();
        for h in redis_hosts(&c) {
            for r in Redis
                .desired(&c, &h)
                .expect("desired")
                .iter()
                .chain(&Redis.uninstall(&c, &h).expect("uninstall"))
            {
                if let Resource::Command {
                    script,
                    unless,
                    undo,
                    ..
                } = r
                {
                    for text in [Some(script), unless.as_ref(), undo.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        for s in &secrets {
                            assert!(!text.contains(s.as_str()), "secret in {}", r.id());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn main_files_are_written_once_and_never_restart_anything() {
        let c = ctx();
        let h = redis_hosts(&c)[0].clone();
        let r = Redis.desired(&c, &h).expect("desired");
        for (id, path) in [
            ("redis-main-conf", layout::REDIS_MAIN),
            ("sentinel-main-conf", layout::SENTINEL_MAIN),
        ] {
            let cmd = r.iter().find(|x| x.id() == format!("command:{id}"));
            match cmd {
                Some(Resource::Command { unless, script, .. }) => {
                    assert!(unless
                        .as_deref()
                        .is_some_and(|u| u.starts_with("grep -qxF")));
                    assert!(script.contains(path));
                }
                o => panic!("{id}: {o:?}"),
            }
            assert!(!r
                .iter()
                .any(|x| matches!(x, Resource::File { path: p, .. } if p == path)));
        }
        for x in &r {
            if let Resource::Service { restart_on, .. } = x {
                assert!(!restart_on
                    .iter()
                    .any(|f| f == layout::REDIS_MAIN || f == layout::SENTINEL_MAIN));
            }
        }
        // Packages first, services last.
        assert!(matches!(r.first(), Some(Resource::Package { .. })));
        assert!(matches!(r.last(), Some(Resource::Service { .. })));
    }

    #[test]
    fn uninstall_stops_purges_and_removes_kbz_files() {
        let c = ctx();
        let h = redis_hosts(&c)[0].clone();
        let r = Redis.uninstall(&c, &h).expect("uninstall");
        for s in [REDIS_SERVICE, SENTINEL_SERVICE] {
            assert!(r.contains(&Resource::Service {
                name: s.into(),
                enabled: false,
                running: false,
                restart_on: vec![]
            }));
        }
        for p in UNINSTALLED_PACKAGES {
            assert!(r.contains(&Resource::absent_package(p)));
        }
        // Purging redis-tools would delete /var/lib/redis: it stays.
        assert!(!r.iter().any(|x| x.id() == "package:redis-tools"));
        for f in render::files(&c, &h, &Layout::debian()).expect("files") {
            assert!(r.contains(&Resource::absent_file(&f.path)), "{}", f.path);
        }
        assert!(!r.iter().any(
            |x| matches!(x, Resource::File { path, .. } if path.starts_with(layout::DATA_DIR))
        ));
    }
}
