//! kbz-etcd (module 4): a three-member etcd 3.4 cluster on the hosts with the `etcd` role,
//! the store Patroni keeps its leader lock and cluster state in.
//!
//! Design:
//! - Debian's `etcd-server` reads `/etc/default/etcd` as the environment of `etcd.service`.
//!   kbz writes that file *before* the package is installed. The file is a conffile and kbz
//!   installs with `--force-confold`, so dpkg keeps it, and the start in the package's postinst
//!   already uses the cluster settings: no member ever bootstraps as Debian's default
//!   single-node cluster. The data directory is kbz's own ([`DATA_DIR`]), so a host where
//!   Debian's default member already ran (in `/var/lib/etcd/default`) still joins the new
//!   cluster with an empty directory; the old directory is left alone.
//! - A first member blocks until a quorum of members runs, and Debian's unit is
//!   `Type=notify` (etcd notifies only once it has quorum). A drop-in makes it `Type=exec`, so
//!   `systemctl start` returns once etcd runs, whatever order and pace hosts are installed in;
//!   [`Etcd::converge_cluster`] then waits (polling) for `etcdctl endpoint health --cluster`.
//! - Members are not rolled: every member must start before any can serve. A change of the
//!   environment file restarts etcd on every member of the run (etcd restarts in well under a
//!   second, and Patroni rides out DCS outages shorter than its `retry_timeout`).
//! - Peer and client URLs are on the hosts' inventory addresses; clients may also use
//!   127.0.0.1:2379. `initial-cluster` lists every `etcd` host, the state is `new`, and the
//!   token is derived from `[cluster] name`. The v2 API is off: Patroni's `etcd3` store speaks v3.
//! - Members named in the inventory are only read at the first bootstrap: adding or removing a
//!   member later needs `etcdctl member add/remove`, and kbz reports the mismatch (E035).
//! - Uninstall purges the packages; Debian's purge of `etcd-server` removes `/var/lib/etcd`
//!   (the DCS only holds Patroni's leader lock and dynamic config, which Patroni writes again).

pub mod backup;
mod check;
mod health;

pub use check::{parse_status, MemberStatus};
pub use health::{
    member_differences, parse_endpoint_health, parse_member_list, verdict, EndpointHealth,
    Expected, Member, Verdict,
};

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, Conflict, HealthCheck, HealthRaw, HostExec, Listen,
    Probe,
};
use kbz_core::net::http_url;
use kbz_core::preflight::Severity;
use kbz_core::{Cmd, Context, Host, Output, Resource, Role};
use kbz_errors::Code;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Environment of `etcd.service` (Debian's `EnvironmentFile=-/etc/default/%p`).
pub const ENV_FILE: &str = "/etc/default/etcd";
/// systemd drop-in that makes the unit `Type=exec`.
pub const DROPIN_FILE: &str = "/etc/systemd/system/etcd.service.d/kbz.conf";
/// Data directory (etcd creates it, mode 0700, inside Debian's `/var/lib/etcd`).
pub const DATA_DIR: &str = "/var/lib/etcd/kbz";
/// Client port.
pub const CLIENT_PORT: u16 = 2379;
/// Peer port.
pub const PEER_PORT: u16 = 2380;
/// Packages: the daemon and `etcdctl`.
pub const PACKAGES: &[&str] = &["etcd-server", "etcd-client"];
/// The systemd unit.
pub const SERVICE: &str = "etcd";
/// Where kbz puts etcd's TLS files when `[security] tls` is on (owned by the etcd user).
pub const TLS_DIR: &str = "/etc/etcd/kbz-tls";
/// The cluster CA: peers and clients must present a certificate it signed.
pub const TLS_CA: &str = "/etc/etcd/kbz-tls/ca.crt";
/// The member's certificate (server and client: peers, and etcdctl on the host).
pub const TLS_CERT: &str = "/etc/etcd/kbz-tls/member.crt";
/// The member's key (0600, etcd:etcd).
pub const TLS_KEY: &str = "/etc/etcd/kbz-tls/member.key";

const ENV_TEMPLATE: &str = include_str!("../templates/etcd.env.hbs");
const DROPIN: &str = include_str!("../templates/etcd.service.kbz.conf");

/// The line kbz's environment file has on a member configured without `[security] tls`.
pub const PLAINTEXT_PEER_LINE: &str = "ETCD_LISTEN_PEER_URLS=\"http://";

/// How often readiness polls run.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// One `etcdctl` call: dial 2 s plus command 5 s, with room to spare.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(20);

/// Module 4: etcd on the `etcd` hosts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Etcd;

impl Etcd {
    /// The etcd members: hosts with the `etcd` role, in inventory order.
    pub fn members(ctx: &Context) -> Vec<&Host> {
        ctx.inventory.with_role(Role::Etcd)
    }

    /// Name and advertised URLs of every member (`https://` with `[security] tls`).
    pub fn expected(ctx: &Context) -> Vec<Expected> {
        let tls = ctx.config.security.tls;
        Etcd::members(ctx)
            .into_iter()
            .map(|h| Expected {
                name: h.hostname.clone(),
                client_url: url(tls, h.ip, CLIENT_PORT),
                peer_url: url(tls, h.ip, PEER_PORT),
            })
            .collect()
    }

    /// Every member's client URL, comma separated (`etcdctl --endpoints`).
    pub fn endpoints(ctx: &Context) -> String {
        Etcd::expected(ctx)
            .into_iter()
            .map(|e| e.client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `initial-cluster-token`: stable for the cluster, distinct between clusters.
    pub fn token(ctx: &Context) -> String {
        format!("kbz-{}", ctx.config.cluster.slug())
    }

    /// `/etc/default/etcd` for one member.
    pub fn env_file(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
        let members = Etcd::expected(ctx);
        if !members.iter().any(|m| m.name == host.hostname) {
            return Err(ComponentError::Render {
                template: "etcd.env.hbs".into(),
                reason: format!("{} does not have the etcd role", host.hostname),
            });
        }
        let initial = ctx.shared("etcd/initial-cluster", || {
            members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect::<Vec<_>>()
                .join(",")
        });
        let tls = ctx.config.security.tls;
        let client = url(tls, host.ip, CLIENT_PORT);
        let loopback = url(tls, IpAddr::from([127, 0, 0, 1]), CLIENT_PORT);
        let listen_client = if client == loopback {
            client.clone()
        } else {
            format!("{client},{loopback}")
        };
        kbz_core::template::render(
            "etcd.env.hbs",
            ENV_TEMPLATE,
            &serde_json::json!({
                "name": host.hostname,
                "data_dir": DATA_DIR,
                "peer_url": url(tls, host.ip, PEER_PORT),
                "client_url": client,
                "listen_client_urls": listen_client,
                "initial_cluster": &*initial,
                "token": Etcd::token(ctx),
                "tls": tls,
                "tls_ca": TLS_CA,
                "tls_cert": TLS_CERT,
                "tls_key": TLS_KEY,
            }),
        )
    }

    /// The systemd drop-in.
    pub fn dropin() -> &'static str {
        DROPIN
    }

    /// `etcdctl` against every member with short timeouts; stderr merged into stdout. With
    /// `[security] tls` it presents the host's member certificate ([`client_flags`]).
    pub fn etcdctl(ctx: &Context, args: &str) -> String {
        format!(
            "ETCDCTL_API=3 etcdctl --endpoints={}{} --dial-timeout=2s --command-timeout=5s {args} 2>&1",
            Etcd::endpoints(ctx),
            client_flags(ctx.config.security.tls)
        )
    }

    /// The health probe: `endpoint health --cluster`.
    pub fn health_script(ctx: &Context) -> String {
        Etcd::etcdctl(ctx, "endpoint health --cluster")
    }

    /// The member list.
    pub fn member_list_script(ctx: &Context) -> String {
        Etcd::etcdctl(ctx, "member list")
    }
}

/// A member's URL: `http://` or, with `[security] tls`, `https://`.
pub fn url(tls: bool, ip: IpAddr, port: u16) -> String {
    let u = http_url(ip, port);
    if tls {
        u.replacen("http://", "https://", 1)
    } else {
        u
    }
}

/// The etcdctl options that present the member certificate kbz pushed (empty without TLS).
pub fn client_flags(tls: bool) -> String {
    if tls {
        format!(" --cacert={TLS_CA} --cert={TLS_CERT} --key={TLS_KEY}")
    } else {
        String::new()
    }
}

/// Asks the member at `ip` about itself (`endpoint status` of its own client URL, JSON): its
/// member id and the leader it follows. [`is_leader`] reads the answer. It runs on the
/// member itself and speaks TLS when kbz's member key is there (`[security] tls`: kbz pushes
/// it, and removes it when TLS is off), so callers without the configuration (kbz-faults)
/// ask the way the member listens.
pub fn status_script(ip: IpAddr) -> String {
    local_ctl(ip, "endpoint status -w json")
}

/// `etcdctl ARGS` run on a member against the client URL at `ip`, over TLS with the member
/// certificate when kbz's member key is on the host (see [`status_script`]), plain HTTP
/// otherwise.
pub fn local_ctl(ip: IpAddr, args: &str) -> String {
    let ctl = |tls: bool| {
        format!(
            "ETCDCTL_API=3 etcdctl --endpoints={}{} --dial-timeout=2s --command-timeout=3s {args}",
            url(tls, ip, CLIENT_PORT),
            client_flags(tls)
        )
    };
    format!(
        "if [ -r {TLS_KEY} ]; then {}; else {}; fi",
        ctl(true),
        ctl(false)
    )
}

/// Whether the member that answered [`status_script`] is the Raft leader (`None` when the
/// answer is not an endpoint status).
pub fn is_leader(stdout: &str) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    let s = v.get(0)?.get("Status")?;
    let me = s.get("header")?.get("member_id")?.as_u64()?;
    let leader = s.get("leader")?.as_u64()?;
    Some(me == leader)
}

/// The member's TLS files, before the environment file and the package so that the first
/// start already has them; absent while `[security] tls` is off. etcd runs as the `etcd`
/// user, which the package makes in its postinst: kbz makes it the same way first, so the
/// key can be the etcd user's own (0600).
fn tls_files(ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
    let Some((pki, member)) = ctx.tls_member(&host.hostname)? else {
        return Ok([TLS_CA, TLS_CERT, TLS_KEY]
            .map(Resource::absent_file)
            .into());
    };
    let file = |path: &str, content: &str, mode: u32, owner: &str| Resource::File {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode,
        owner: owner.into(),
        present: true,
    };
    Ok(vec![
        Resource::Command {
            id: "etcd-user".into(),
            script: "adduser --system --group --disabled-login --disabled-password --home /var/lib/etcd/ etcd".into(),
            unless: Some("getent passwd etcd >/dev/null".into()),
            creates: None,
            undo: None,
        },
        Resource::Directory {
            path: TLS_DIR.into(),
            mode: 0o750,
            owner: "root:etcd".into(),
        },
        file(TLS_CA, pki.ca_pem(), 0o644, "root:root"),
        file(TLS_CERT, &member.cert_pem, 0o644, "root:root"),
        file(TLS_KEY, member.key.expose(), 0o600, "etcd:etcd"),
    ])
}

/// Runs a read-only script on the first host that answers; `Err` when none does.
async fn run_on_any(hosts: &[HostExec], script: &str) -> Result<(String, Output), ComponentError> {
    let mut last = None;
    for hx in hosts {
        match hx
            .exec
            .run(&Cmd::new(script).timeout(ETCDCTL_TIMEOUT))
            .await
        {
            Ok(out) => return Ok((hx.host.hostname.clone(), out)),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => ComponentError::Exec(e),
        None => ComponentError::Bootstrap {
            component: "etcd".into(),
            reason: "no etcd host is connected".into(),
        },
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", out.stdout_str(), out.stderr_str())
}

/// The E036 error for a cluster without quorum.
fn no_quorum(host: &str, v: &Verdict, total: usize, secs: u64) -> ComponentError {
    ComponentError::Cluster {
        code: Code::E036,
        message: format!(
            "etcd has no quorum after waiting {secs}s: {}",
            v.describe(total)
        ),
        host: Some(host.into()),
        hint: Some(
            "on each member named: `systemctl status etcd` and `journalctl -u etcd -n 100`; \
             members must reach each other on ports 2379-2380"
                .into(),
        ),
    }
}

#[async_trait]
impl Component for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn module(&self) -> u8 {
        4
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Etcd)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let env = Etcd::env_file(ctx, host)?;
        let mut r = vec![
            // The drop-in and the environment come before the package, so the postinst's
            // first start already runs as a member of the three-node cluster.
            Resource::file(DROPIN_FILE, DROPIN, 0o644),
            Resource::Command {
                id: "etcd-unit-reload".into(),
                script: "systemctl daemon-reload".into(),
                unless: Some(
                    "[ \"$(systemctl show -p Type --value etcd.service)\" = exec ]".into(),
                ),
                creates: None,
                undo: Some("systemctl daemon-reload".into()),
            },
        ];
        r.extend(tls_files(ctx, host)?);
        r.push(Resource::file(ENV_FILE, env, 0o644));
        r.extend(PACKAGES.iter().map(|p| Resource::package(p)));
        r.push(Resource::service(
            SERVICE,
            &[ENV_FILE, DROPIN_FILE, TLS_CA, TLS_CERT, TLS_KEY],
        ));
        Ok(r)
    }

    fn uninstall(&self, _ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let mut r = vec![Resource::stopped_service(SERVICE)];
        r.extend(PACKAGES.iter().map(|p| Resource::absent_package(p)));
        r.push(Resource::absent_file(ENV_FILE));
        r.push(Resource::absent_file(DROPIN_FILE));
        r.extend([TLS_CA, TLS_CERT, TLS_KEY].map(Resource::absent_file));
        Ok(r)
    }

    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        let expected = Etcd::expected(ctx);
        if expected.is_empty() || hosts.is_empty() {
            return Ok(Vec::new());
        }
        let secs = ctx.config.timeouts.readiness;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let script = Etcd::health_script(ctx);
        loop {
            let (on, out) = run_on_any(hosts, &script).await?;
            let v = verdict(&parse_endpoint_health(&text(&out)), &expected);
            if v == Verdict::Healthy {
                break;
            }
            if Instant::now() + POLL_INTERVAL > deadline {
                return Err(match v {
                    Verdict::NoQuorum { .. } => no_quorum(&on, &v, expected.len(), secs),
                    _ => ComponentError::Readiness {
                        what: format!(
                            "every etcd member to report healthy ({})",
                            v.describe(expected.len())
                        ),
                        secs,
                    },
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let (_, out) = run_on_any(hosts, &Etcd::member_list_script(ctx)).await?;
        let diffs = member_differences(&parse_member_list(&out.stdout_str()), &expected);
        if diffs.is_empty() {
            // etcd bootstraps itself from the env file; this step only waits and checks.
            Ok(Vec::new())
        } else {
            Err(ComponentError::Bootstrap {
                component: "etcd".into(),
                reason: format!(
                    "the member list differs from the inventory: {}. etcd reads the inventory's \
                     member list only at its first bootstrap; change members with `etcdctl \
                     member add` / `member remove`, one at a time",
                    diffs.join("; ")
                ),
            })
        }
    }

    fn health_probes(&self, ctx: &Context, host: &Host) -> Vec<Probe> {
        check::probes(ctx, host)
    }

    /// With `[security] tls`, a member kbz configured without it stops the install before
    /// anything changes: etcd keeps the peer URLs of its first bootstrap in its data, so
    /// restarting members with https peers would cut every member off from the others
    /// (quorum lost, Patroni demoting its primary). The fix names the way out.
    fn conflicts(&self, ctx: &Context, _host: &Host) -> Vec<Conflict> {
        if !ctx.config.security.tls {
            return Vec::new();
        }
        vec![Conflict {
            path: ENV_FILE.into(),
            line_prefix: Some(PLAINTEXT_PEER_LINE.into()),
            what: "an etcd member installed without TLS (its peers speak plain http)".into(),
            fix:
                "`[security] tls = true` cannot be switched on by a re-run for a running plaintext \
                  cluster: keep `[security] tls = false` for it, or migrate it first as \
                  docs/security.md (\"Turning TLS on for a running cluster\") shows"
                    .into(),
            severity: Severity::Error,
        }]
    }

    /// Members healthy (degraded otherwise), quorum and one leader (down otherwise).
    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        check::checks(ctx, raw)
    }

    /// The client API on the host's address and 127.0.0.1, the peer port on the host's.
    fn listens(&self, ctx: &Context, host: &Host) -> Vec<Listen> {
        let auth = if ctx.config.security.tls {
            "client certificate (kbz's CA)"
        } else {
            "none (plaintext)"
        };
        let lo = IpAddr::from([127, 0, 0, 1]);
        vec![
            Listen::new("etcd client", CLIENT_PORT, &[host.ip, lo], &["etcd"])
                .marker(DROPIN_FILE)
                .auth(auth),
            Listen::new("etcd peer", PEER_PORT, &[host.ip], &["etcd"])
                .marker(DROPIN_FILE)
                .auth(auth),
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_status_tells_the_leader() {
        // Captured from etcd 3.4 (`endpoint status -w json`), ids shortened.
        let leader = r#"[{"Endpoint":"http://10.77.0.12:2379","Status":{"header":{"cluster_id":1,"member_id":18342,"revision":90,"raft_term":8},"version":"3.4.23","dbSize":61440,"leader":18342,"raftIndex":120,"raftTerm":8}}]"#;
        let follower = leader.replace("\"member_id\":18342", "\"member_id\":77");
        assert_eq!(super::is_leader(leader), Some(true));
        assert_eq!(super::is_leader(&follower), Some(false));
        assert_eq!(super::is_leader("Error: context deadline exceeded"), None);
        kbz_testkit::assert_valid_sh([super::status_script("10.0.0.1".parse().expect("ip"))]);
    }

    use super::*;
    use kbz_core::{Config, Inventory, Secrets};

    fn ctx() -> Context {
        let inv = Inventory {
            path: "servers.tsv".into(),
            hosts: vec![
                Host::new("lb1", "10.0.0.5".parse().expect("ip"), &[Role::Lb]),
                Host::new("db1", "10.0.0.11".parse().expect("ip"), &[Role::Etcd]),
                Host::new("db2", "10.0.0.12".parse().expect("ip"), &[Role::Etcd]),
                Host::new("db3", "fd00::13".parse().expect("ip"), &[Role::Etcd]),
            ],
        };
        let mut cfg = Config::default();
        cfg.cluster.name = "Prod EU".into();
        Context::new(inv, cfg, Secrets::in_memory())
    }

    fn env_of(text: &str, key: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{key} missing in\n{text}"))
    }

    #[test]
    fn env_file_describes_this_member_and_the_cluster() {
        let c = ctx();
        let host = c.inventory.host("db2").expect("db2").clone();
        let env = Etcd::env_file(&c, &host).expect("render");
        assert_eq!(env_of(&env, "ETCD_NAME"), "db2");
        assert_eq!(env_of(&env, "ETCD_DATA_DIR"), DATA_DIR);
        assert_eq!(
            env_of(&env, "ETCD_LISTEN_PEER_URLS"),
            "http://10.0.0.12:2380"
        );
        assert_eq!(
            env_of(&env, "ETCD_INITIAL_ADVERTISE_PEER_URLS"),
            "http://10.0.0.12:2380"
        );
        assert_eq!(
            env_of(&env, "ETCD_LISTEN_CLIENT_URLS"),
            "http://10.0.0.12:2379,http://127.0.0.1:2379"
        );
        assert_eq!(
            env_of(&env, "ETCD_ADVERTISE_CLIENT_URLS"),
            "http://10.0.0.12:2379"
        );
        assert_eq!(
            env_of(&env, "ETCD_INITIAL_CLUSTER"),
            "db1=http://10.0.0.11:2380,db2=http://10.0.0.12:2380,db3=http://[fd00::13]:2380"
        );
        assert_eq!(env_of(&env, "ETCD_INITIAL_CLUSTER_STATE"), "new");
        assert_eq!(env_of(&env, "ETCD_INITIAL_CLUSTER_TOKEN"), "kbz-prod-eu");
        assert_eq!(env_of(&env, "ETCD_ENABLE_V2"), "false");
        // Every setting is a valid `KEY="value"` line for systemd's EnvironmentFile.
        for l in env.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = l.split_once('=').expect("KEY=value");
            assert!(
                k.starts_with("ETCD_")
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()),
                "{l}"
            );
            assert!(
                v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                "{l}"
            );
        }
    }

    #[test]
    fn ipv6_member_urls_are_bracketed() {
        let c = ctx();
        let host = c.inventory.host("db3").expect("db3").clone();
        let env = Etcd::env_file(&c, &host).expect("render");
        assert_eq!(
            env_of(&env, "ETCD_ADVERTISE_CLIENT_URLS"),
            "http://[fd00::13]:2379"
        );
    }

    #[test]
    fn host_without_the_role_is_refused() {
        let c = ctx();
        let host = c.inventory.host("lb1").expect("lb1").clone();
        let e = Etcd::env_file(&c, &host).expect_err("not a member");
        assert_eq!(kbz_errors::HasCode::code(&e), Code::E034);
    }

    #[test]
    fn config_files_come_before_the_package() {
        let c = ctx();
        let host = c.inventory.host("db1").expect("db1").clone();
        let r = Etcd.desired(&c, &host).expect("desired");
        let pos = |id: &str| r.iter().position(|x| x.id() == id).expect(id);
        assert!(pos("file:/etc/default/etcd") < pos("package:etcd-server"));
        assert!(pos(&format!("file:{DROPIN_FILE}")) < pos("package:etcd-server"));
        assert!(pos("package:etcd-server") < pos("service:etcd"));
        match &r[pos("service:etcd")] {
            Resource::Service { restart_on, .. } => {
                assert!(restart_on.contains(&ENV_FILE.to_string()))
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn a_plaintext_member_conflicts_only_when_tls_is_wanted() {
        let mut c = ctx();
        let host = c.inventory.host("db1").expect("db1").clone();
        assert!(Etcd.conflicts(&c, &host).is_empty());
        let plain = Etcd::env_file(&c, &host).expect("render");
        assert!(
            plain.lines().any(|l| l.starts_with(PLAINTEXT_PEER_LINE)),
            "{plain}"
        );
        let mut cfg = (*c.config).clone();
        cfg.security.tls = true;
        c.config = std::sync::Arc::new(cfg);
        let conflicts = Etcd.conflicts(&c, &host);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].path, ENV_FILE);
        assert_eq!(conflicts[0].severity, Severity::Error);
        assert_eq!(
            conflicts[0].line_prefix.as_deref(),
            Some(PLAINTEXT_PEER_LINE)
        );
    }

    #[test]
    fn dropin_makes_the_start_non_blocking() {
        let d = Etcd::dropin();
        assert!(d.contains("[Service]\nType=exec\n"), "{d}");
    }

    #[test]
    fn etcdctl_keeps_stderr_and_uses_every_endpoint() {
        let s = Etcd::health_script(&ctx());
        assert!(s.starts_with("ETCDCTL_API=3 etcdctl --endpoints=http://10.0.0.11:2379,http://10.0.0.12:2379,http://[fd00::13]:2379 "), "{s}");
        assert!(s.ends_with("endpoint health --cluster 2>&1"), "{s}");
    }

    /// `sh -n` (parse only, runs nothing) accepts every script this component sends.
    #[test]
    fn every_script_is_valid_sh() {
        let c = ctx();
        let host = c.inventory.host("db1").expect("db1").clone();
        let mut scripts = vec![Etcd::health_script(&c), Etcd::member_list_script(&c)];
        let resources = Etcd.desired(&c, &host).expect("desired");
        scripts.extend(
            resources
                .iter()
                .flat_map(|r| r.scripts())
                .map(str::to_string),
        );
        kbz_testkit::assert_valid_sh(&scripts);
    }

    #[test]
    fn token_is_the_cluster_name_as_a_slug() {
        let mut c = ctx();
        assert_eq!(Etcd::token(&c), "kbz-prod-eu");
        for (name, token) in [("--", "kbz-kbz"), ("example", "kbz-example")] {
            let mut cfg = (*c.config).clone();
            cfg.cluster.name = name.into();
            c.config = std::sync::Arc::new(cfg);
            assert_eq!(Etcd::token(&c), token);
        }
    }
}
