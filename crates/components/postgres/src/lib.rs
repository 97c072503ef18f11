//! kbz-postgres (module 5): PostgreSQL run by Patroni on the hosts with the `postgres` role,
//! with etcd (module 4) as Patroni's store: one primary and streaming replicas, synchronous
//! mode on by default, authenticated replication and REST API.
//!
//! Design:
//! - Debian's default cluster: installing `postgresql-NN` normally creates and starts the
//!   cluster `NN/main` on port 5432, which would fight Patroni for the port. kbz writes
//!   `/etc/postgresql-common/createcluster.d/kbz.conf` (`create_main_cluster = false`) before
//!   the packages are installed, so the default cluster is never created. On a host where one
//!   already exists it is stopped and marked `disabled` in its `start.conf` (its data is kept:
//!   kbz never deletes a database it did not create), and the `postgresql.service` umbrella
//!   unit is stopped and disabled (not masked: masking breaks package upgrades).
//! - Patroni itself: a pinned release from PyPI (4.1.5 by default), not Debian 12's 3.0.2,
//!   whose etcd3 store overwrites a new leader's key after a partition heals (see the
//!   `patroni` module and docs/patroni-partition.md). Debian's package stays for the unit
//!   and the Python dependencies.
//! - Unit: Debian's `patroni.service` (with a drop-in running the pinned Patroni) and
//!   `/etc/patroni/config.yml` (mode 0600, owner postgres, it holds the passwords). The `patroni@.service` template and
//!   `pg_createconfig_patroni` are not used: they tie Patroni to postgresql-common's cluster
//!   registry, which this cluster deliberately stays out of.
//! - Data lives in `/var/lib/postgresql/NN/kbz`, not registered with postgresql-common, so
//!   `pg_lsclusters` does not show it and `uninstall` keeps it. Uninstall stops and disables
//!   Patroni (which stops PostgreSQL), purges `patroni`, `postgresql-NN` and `python3-etcd`,
//!   and removes kbz's files. Beware: Debian's purge of `postgresql-NN` drops every cluster
//!   registered under `/etc/postgresql/NN`, which includes a pre-existing `NN/main` that the
//!   install only disabled.
//! - Bootstrap order: the component is rolling; after each host, [`Postgres::host_ready`]
//!   waits until that member is the primary (the first host bootstraps the cluster) or a
//!   replica whose WAL receiver streams. `converge_cluster` then checks the member list (REST `GET /cluster`)
//!   (one leader, every other member a replica, a synchronous standby in synchronous mode) and
//!   the primary's `pg_stat_replication` (every replica streaming), or fails with E038.
//! - A changed config file is applied with `systemctl reload patroni` (SIGHUP), not a restart:
//!   restarting Patroni on the leader would fail the cluster over. The reload is planned only
//!   when Patroni already ran before the run (a Patroni started by the run reads the new file).
//! - Failover timing: ttl 20 s, loop_wait 5 s, retry_timeout 5 s (see [`TTL`]).
//! - No secret is ever on a command line: patronictl reads the config file, and psql runs as
//!   the `postgres` OS user with peer authentication over the local socket.

mod app;
mod cluster;
pub mod dcs_restore;
mod health;
pub mod kept;
mod patroni;
pub mod tls;

pub use app::{
    changes as app_changes, setup_sql as app_setup_sql, APP_PASSWORD,
    SETUP_SCRIPT as APP_SETUP_SCRIPT,
};
pub use cluster::{
    check_members, check_replication, cluster_script, parse_cluster, parse_replication,
    psql_script, ready_script, switchover_script, MemberRow, ReplicationRow, REPLICATION_QUERY,
};
pub use health::{parse_patroni, parse_samples, replica_verdict, PatroniStatus, Standby};
pub use patroni::{
    default_pin as patroni_default_pin, dropin as patroni_dropin,
    install_dir as patroni_install_dir, pin as patroni_pin, wheel_file as patroni_wheel_file,
    ARTIFACT as PATRONI_ARTIFACT, DEFAULT_PATRONI_SHA256, DEFAULT_PATRONI_VERSION,
    DROPIN_PATH as PATRONI_DROPIN, PATRONICTL_BIN, PATRONI_BIN,
};

use async_trait::async_trait;
use kbz_core::component::{
    ClusterChange, Component, ComponentError, HealthCheck, HealthRaw, HostExec, Listen, Probe,
};
use kbz_core::net::{host_port, http_url};
use kbz_core::{Cmd, Context, Host, Resource, Role};
use kbz_errors::{Code, Diagnostic};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Patroni's configuration file (read by Debian's `patroni.service`).
pub const CONFIG_PATH: &str = "/etc/patroni/config.yml";
/// Left by `patroni-etcd-protocol` when this run changes the etcd protocol of a running
/// Patroni: `patroni-reload` then restarts it instead of reloading it.
const RESTART_MARK: &str = "/run/kbz-patroni-restart";

/// True (exit 0) when Patroni is not running, or its config file's `etcd3` section already
/// names the protocol `tls` wants (`protocol: https` with TLS, none without).
fn etcd_protocol_unchanged(tls: bool) -> String {
    format!(
        "! systemctl is-active -q patroni.service || \
         [ \"$(awk '/^etcd3:/{{f=1;next}} f&&/^[^ ]/{{exit}} f&&/^  protocol: https$/{{print \"https\"}}' {CONFIG_PATH} 2>/dev/null)\" = \"{}\" ]",
        if tls { "https" } else { "" }
    )
}
/// postgresql-common drop-in that stops package installs creating `NN/main`.
pub const CREATECLUSTER_PATH: &str = "/etc/postgresql-common/createcluster.d/kbz.conf";
/// Password file Patroni writes for replication and rewind connections.
pub const PGPASS_PATH: &str = "/var/lib/postgresql/.pgpass_patroni";
/// PostgreSQL major version installed when `[versions] postgres` is not set.
pub const DEFAULT_VERSION: &str = "15";
/// PostgreSQL port.
pub const PG_PORT: u16 = 5432;
/// Patroni REST API port.
pub const REST_PORT: u16 = 8008;
/// The systemd unit.
pub const SERVICE: &str = "patroni";

/// Leader-key lifetime (s): a dead leader's key expires after at most this long, and a
/// replica takes over within one more `loop_wait`. Patroni's minimum is 20.
pub const TTL: u32 = 20;
/// Seconds between Patroni's HA loop runs (minimum 1).
pub const LOOP_WAIT: u32 = 5;
/// Seconds DCS and PostgreSQL operations are retried before the leader demotes itself
/// (minimum 3).
pub const RETRY_TIMEOUT: u32 = 5;
/// A replica lagging more than this many bytes does not take part in a leader race.
pub const MAXIMUM_LAG_ON_FAILOVER: u64 = 1024 * 1024;

/// Patroni's rule for its DCS timings: each at least its minimum (ttl 20, loop_wait 1,
/// retry_timeout 3) and `loop_wait + 2 * retry_timeout <= ttl`. Outside it Patroni adjusts the
/// values on its own, or a leader can lose its key while still retrying.
pub const fn dcs_timing_ok(ttl: u32, loop_wait: u32, retry_timeout: u32) -> bool {
    ttl >= 20 && loop_wait >= 1 && retry_timeout >= 3 && loop_wait + 2 * retry_timeout <= ttl
}

const _: () = assert!(dcs_timing_ok(TTL, LOOP_WAIT, RETRY_TIMEOUT));

/// Secret: password of the REST API user `patroni`.
pub const REST_PASSWORD: &str = "patroni_rest_password";
/// Secret: password of the superuser `postgres`.
pub const SUPERUSER_PASSWORD: &str = "postgres_superuser_password";
/// Secret: password of the replication user `replicator`.
pub const REPLICATION_PASSWORD: &str = "postgres_replication_password";
/// Secret: password of `rewind_user`, which pg_rewind connects as.
pub const REWIND_PASSWORD: &str = "postgres_rewind_password";

const CONFIG_TEMPLATE: &str = include_str!("../templates/patroni.yml.hbs");
const CREATECLUSTER: &str = include_str!("../templates/createcluster.conf");

/// How often readiness polls run.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// One probe command.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Module 5: PostgreSQL + Patroni on the `postgres` hosts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Postgres;

/// A YAML double-quoted scalar (a JSON string is one).
fn yq(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `pg_hba.conf` lines, least privilege: `peer` on the local socket (Patroni and kbz's own
/// checks run as the `postgres` OS user); the superuser `postgres` refused over TCP from
/// anywhere, loopback included; replication only as `replicator` (from loopback, Patroni's
/// own check, and the networks); `rewind_user` only to the `postgres` database from the
/// networks (pg_rewind and Patroni's checks against a new leader); the application role only
/// to its database, from loopback and the networks. Every TCP line is SCRAM; the networks are
/// `[cluster] subnet` or, without one, the inventory's addresses. Anything else is rejected.
pub fn pg_hba(ctx: &Context) -> Vec<String> {
    let nets: Vec<String> = match ctx.config.cluster.subnet {
        Some(net) => vec![net.to_string()],
        None => ctx
            .inventory
            .hosts
            .iter()
            .map(|h| match h.ip {
                IpAddr::V4(a) => format!("{a}/32"),
                IpAddr::V6(a) => format!("{a}/128"),
            })
            .collect(),
    };
    let mut with_lo = vec!["127.0.0.1/32".to_string(), "::1/128".to_string()];
    with_lo.extend(nets.iter().cloned());
    let mut v = vec![
        "local all all peer".to_string(),
        "host all postgres 0.0.0.0/0 reject".to_string(),
        "host all postgres ::/0 reject".to_string(),
    ];
    v.extend(
        with_lo
            .iter()
            .map(|n| format!("host replication replicator {n} scram-sha-256")),
    );
    v.extend(
        nets.iter()
            .map(|n| format!("host postgres rewind_user {n} scram-sha-256")),
    );
    v.extend(app::hba(ctx, &with_lo));
    v
}

impl Postgres {
    /// The PostgreSQL major version: `[versions] postgres`, else [`DEFAULT_VERSION`].
    pub fn version(ctx: &Context) -> Result<String, ComponentError> {
        let v = ctx
            .config
            .versions
            .get("postgres")
            .map(|s| s.trim())
            .unwrap_or(DEFAULT_VERSION);
        match v.parse::<u32>() {
            Ok(n) if n >= 10 && v.chars().all(|c| c.is_ascii_digit()) => Ok(v.to_string()),
            _ => Err(ComponentError::Input(
                Diagnostic::new(
                    Code::E008,
                    format!(
                        "[versions] postgres = \"{v}\" is not a PostgreSQL major version (10 or later)"
                    ),
                )
                .hint("write the major version only, e.g. `postgres = \"15\"` (Debian 12 ships 15)"),
            )),
        }
    }

    /// The members: hosts with the `postgres` role, in inventory order.
    pub fn members(ctx: &Context) -> Vec<&Host> {
        ctx.inventory.with_role(Role::Postgres)
    }

    /// Patroni's data directory.
    pub fn data_dir(version: &str) -> String {
        format!("/var/lib/postgresql/{version}/kbz")
    }

    /// The directory of `postgres`, `pg_ctl`, `initdb`.
    pub fn bin_dir(version: &str) -> String {
        format!("/usr/lib/postgresql/{version}/bin")
    }

    /// Packages of a member.
    pub fn packages(version: &str) -> Vec<String> {
        vec![
            format!("postgresql-{version}"),
            "patroni".into(),
            // Patroni's etcd and etcd3 stores import python-etcd (Debian's patroni lists it
            // only as one alternative among the stores).
            "python3-etcd".into(),
            // The readiness checks ask Patroni's REST API.
            "curl".into(),
        ]
    }

    /// The REST API base URL of a member.
    pub fn rest_url(host: &Host) -> String {
        http_url(host.ip, REST_PORT)
    }

    /// `/etc/patroni/config.yml` for one member.
    pub fn config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
        let version = Postgres::version(ctx)?;
        let etcd: Vec<String> = ctx
            .inventory
            .with_role(Role::Etcd)
            .iter()
            .map(|h| yq(&host_port(h.ip, 2379)))
            .collect();
        if etcd.is_empty() {
            return Err(ComponentError::Render {
                template: "patroni.yml.hbs".into(),
                reason: "no host has the etcd role: Patroni needs etcd (module 4) as its store; \
                         add `etcd` to three hosts in the inventory"
                    .into(),
            });
        }
        let listen = match host.ip {
            IpAddr::V4(a) if a.is_loopback() && a.octets() == [127, 0, 0, 1] => {
                format!("127.0.0.1:{PG_PORT}")
            }
            ip => format!("{ip},127.0.0.1:{PG_PORT}"),
        };
        let secret = |n: &str| ctx.secret(n).map(|s| yq(s.expose()));
        let tls = ctx.config.security.tls;
        let hba = if tls {
            tls::hostssl(pg_hba(ctx))
        } else {
            pg_hba(ctx)
        };
        let hba: Vec<String> = hba.iter().map(|l| yq(l)).collect();
        kbz_core::template::render(
            "patroni.yml.hbs",
            CONFIG_TEMPLATE,
            &serde_json::json!({
                "scope": yq(&ctx.config.cluster.slug()),
                "name": yq(&host.hostname),
                "rest_listen": yq(&host_port(host.ip, REST_PORT)),
                "rest_connect": yq(&host_port(host.ip, REST_PORT)),
                "rest_password": secret(REST_PASSWORD)?,
                "etcd_hosts": etcd,
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
                "synchronous_mode": ctx.config.postgres.synchronous_mode,
                "pg_hba": hba,
                "pg_listen": yq(&listen),
                "pg_connect": yq(&host_port(host.ip, PG_PORT)),
                "data_dir": yq(&Postgres::data_dir(&version)),
                "bin_dir": yq(&Postgres::bin_dir(&version)),
                "pgpass": yq(PGPASS_PATH),
                "superuser_password": secret(SUPERUSER_PASSWORD)?,
                "replication_password": secret(REPLICATION_PASSWORD)?,
                "rewind_password": secret(REWIND_PASSWORD)?,
                "tls": tls,
                "tls_ca": yq(tls::TLS_CA),
                "tls_cert": yq(tls::TLS_CERT),
                "tls_key": yq(tls::TLS_KEY),
            }),
        )
    }

    /// The postgresql-common drop-in.
    pub fn createcluster() -> &'static str {
        CREATECLUSTER
    }

    /// Stops and disables Debian's own PostgreSQL units: the umbrella `postgresql.service`,
    /// and the default cluster `NN/main` if a previous install created one (kept, disabled).
    fn debian_units_off(version: &str) -> Resource {
        let conf = format!("/etc/postgresql/{version}/main/start.conf");
        Resource::Command {
            id: "postgresql-debian-units-off".into(),
            script: format!(
                "set -e\n\
                 f={conf}\n\
                 if [ -f \"$f\" ]; then\n\
                 \x20 [ -e \"$f.kbz-orig\" ] || cp -p \"$f\" \"$f.kbz-orig\"\n\
                 \x20 systemctl stop postgresql@{version}-main.service || true\n\
                 \x20 printf '%s\\n' '# Disabled by kbz (module 5): Patroni runs PostgreSQL.' disabled > \"$f\"\n\
                 fi\n\
                 systemctl disable --now postgresql.service\n\
                 systemctl daemon-reload\n"
            ),
            // Probed before anything is installed: the postgresql-common check keeps the
            // command pending on a fresh host, so it runs after the packages arrive.
            unless: Some(format!(
                "dpkg-query -W -f='${{Status}}' postgresql-common 2>/dev/null | grep -q 'ok installed' \
                 && ! systemctl is-enabled -q postgresql.service \
                 && ! systemctl is-active -q postgresql.service \
                 && {{ [ ! -f {conf} ] || grep -qx disabled {conf}; }}"
            )),
            creates: None,
            undo: Some(format!(
                "f={conf}; if [ -e \"$f.kbz-orig\" ]; then mv -f \"$f.kbz-orig\" \"$f\"; fi; \
                 systemctl daemon-reload; systemctl enable --now postgresql.service || true"
            )),
        }
    }
}

/// Runs a read-only script on a host; transport errors propagate.
async fn run(hx: &HostExec, script: &str) -> Result<kbz_core::Output, ComponentError> {
    Ok(hx
        .exec
        .run(&Cmd::new(script).timeout(PROBE_TIMEOUT))
        .await?)
}

/// One look at the whole cluster: the leader's name when every check passes, else what is
/// wrong.
async fn observe(
    ctx: &Context,
    hosts: &[HostExec],
) -> Result<Result<String, String>, ComponentError> {
    let expected: Vec<String> = Postgres::members(ctx)
        .iter()
        .map(|h| h.hostname.clone())
        .collect();
    let sync = ctx.config.postgres.synchronous_mode;
    let mut listed = None;
    let mut last_err = String::from("no postgres host is connected");
    for hx in hosts {
        let out = run(hx, &cluster_script(&Postgres::rest_url(&hx.host))).await?;
        match parse_cluster(&out.stdout_str()) {
            Ok(rows) => {
                listed = Some(rows);
                break;
            }
            Err(e) => {
                let err = out.stderr_str();
                last_err = format!("{} ({e}) {}", hx.host.hostname, err.trim());
            }
        }
    }
    let Some(rows) = listed else {
        return Ok(Err(last_err));
    };
    let leader = match check_members(&rows, &expected, sync) {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let Some(lx) = hosts.iter().find(|h| h.host.hostname == leader) else {
        return Ok(Err(format!("leader {leader} is not connected")));
    };
    let out = run(lx, &psql_script(REPLICATION_QUERY)).await?;
    if !out.success() {
        return Ok(Err(format!(
            "cannot read pg_stat_replication on {leader}: {}",
            out.stderr_str().trim()
        )));
    }
    let replicas: Vec<String> = expected.into_iter().filter(|n| *n != leader).collect();
    Ok(check_replication(&parse_replication(&out.stdout_str()), &replicas, sync).map(|()| leader))
}

/// Creates the application role and database on the leader when missing (see `app`).
async fn app_role(
    ctx: &Context,
    hosts: &[HostExec],
    leader: &str,
) -> Result<Vec<ClusterChange>, ComponentError> {
    let Some(lx) = hosts.iter().find(|h| h.host.hostname == leader) else {
        return Ok(Vec::new());
    };
    let out = lx
        .exec
        .run(
            &Cmd::new(app::SETUP_SCRIPT)
                .stdin(app::setup_input(ctx)?)
                .timeout(PROBE_TIMEOUT),
        )
        .await?;
    if !out.success() {
        let pg = &ctx.config.postgres;
        return Err(ComponentError::Cluster {
            code: Code::E035,
            message: format!(
                "cannot create the application role {} and database {} on the leader {leader}: {}",
                pg.app_user,
                pg.app_database,
                out.stderr_str().trim()
            ),
            host: Some(leader.to_string()),
            hint: Some(format!(
                "check on {leader}: `runuser -u postgres -- psql -c '\\du'`; a database of that name owned by \
                 another role, or [postgres] app_user / app_database naming existing objects, can cause it"
            )),
        });
    }
    Ok(app::changes(ctx, leader, &out.stdout_str()))
}

fn replication_broken(what: String, secs: u64) -> ComponentError {
    ComponentError::Cluster {
        code: Code::E038,
        message: format!("the PostgreSQL cluster is not replicating after {secs}s: {what}"),
        host: None,
        hint: Some(
            "see the cluster: `patronictl -c /etc/patroni/config.yml list`, and the members' \
             logs: `journalctl -u patroni -n 100`"
                .into(),
        ),
    }
}

#[async_trait]
impl Component for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn module(&self) -> u8 {
        5
    }

    fn secret_names(&self) -> Vec<String> {
        [
            REST_PASSWORD,
            SUPERUSER_PASSWORD,
            REPLICATION_PASSWORD,
            REWIND_PASSWORD,
            APP_PASSWORD,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Postgres)
    }

    fn desired(&self, ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let version = Postgres::version(ctx)?;
        let config = Postgres::config(ctx, host)?;
        let hash = kbz_core::shell::sha256_hex(config.as_bytes());
        // Guards are probed before anything changes. A reload is needed only when Patroni
        // already runs with another config: a Patroni that starts in this run reads the new
        // file anyway, and a SIGHUP sent while it is still starting up (before Python has
        // installed its handler) would kill it.
        let no_reload_needed = format!(
            "[ \"$(sha256sum {CONFIG_PATH} 2>/dev/null | cut -d' ' -f1)\" = {hash} ] \
             || ! systemctl is-active -q patroni.service"
        );
        // Skipped when the running Patroni started after the file was written (this run
        // restarted it): it read the file, and an early SIGHUP could kill it. A SIGHUP does
        // not reconnect Patroni's etcd client, so when the file changes etcd's protocol
        // (`patroni-etcd-protocol` left its mark) Patroni is restarted instead.
        let reload = format!(
            "if [ -e {RESTART_MARK} ]; then rm -f {RESTART_MARK}; systemctl restart patroni.service; \
             elif systemctl is-active -q patroni.service; then \
             s=$(date -d \"$(systemctl show -p ExecMainStartTimestamp --value patroni.service)\" +%s 2>/dev/null || echo 0); \
             m=$(stat -c %Y /etc/patroni/config.yml); \
             if [ \"$s\" -le \"$m\" ]; then systemctl reload patroni.service; fi; fi"
        );
        let reload = reload.as_str();
        let mut r = vec![Resource::file(
            CREATECLUSTER_PATH,
            Postgres::createcluster(),
            0o644,
        )];
        r.extend(
            Postgres::packages(&version)
                .iter()
                .map(|p| Resource::package(p)),
        );
        r.push(Postgres::debian_units_off(&version));
        r.push(Resource::Directory {
            path: Postgres::data_dir(&version),
            mode: 0o700,
            owner: "postgres:postgres".into(),
        });
        r.extend(patroni::resources(ctx));
        r.extend(tls::resources(ctx, host)?);
        // Planned with `patroni-reload`; it does nothing itself, but its undo reloads Patroni
        // *after* a rollback has put the previous file back.
        r.push(Resource::Command {
            id: "patroni-reload-on-rollback".into(),
            script: ":".into(),
            unless: Some(no_reload_needed.clone()),
            creates: None,
            undo: Some(reload.into()),
        });
        // Probed before the file changes: a running Patroni whose file names another etcd
        // protocol (http to https: the TLS migration of docs/security.md, done with the
        // cluster paused, so PostgreSQL keeps running) must be restarted to reconnect.
        r.push(Resource::Command {
            id: "patroni-etcd-protocol".into(),
            script: format!("touch {RESTART_MARK}"),
            unless: Some(etcd_protocol_unchanged(ctx.config.security.tls)),
            creates: None,
            // A rollback puts the old file back: Patroni must be restarted onto it as well.
            undo: Some(format!("touch {RESTART_MARK}")),
        });
        r.push(Resource::File {
            path: CONFIG_PATH.into(),
            content: config.into_bytes(),
            mode: 0o600,
            owner: "postgres:postgres".into(),
            present: true,
        });
        // A new Patroni release needs a new process (rolling: one member at a time).
        r.push(Resource::service(SERVICE, &patroni::restart_paths()));
        // A changed config is applied with SIGHUP: a restart would fail the leader over.
        // Nothing to undo here: `patroni-reload-on-rollback` reloads once the old file is back.
        r.push(Resource::Command {
            id: "patroni-reload".into(),
            script: reload.into(),
            unless: Some(no_reload_needed),
            creates: None,
            undo: Some(":".into()),
        });
        Ok(r)
    }

    fn rolling(&self) -> bool {
        true
    }

    async fn roll_order(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<String>, ComponentError> {
        kept::roll_order(hosts, &Postgres::data_dir(&Postgres::version(ctx)?)).await
    }

    async fn host_ready(
        &self,
        ctx: &Context,
        hx: &HostExec,
        _changed: bool,
    ) -> Result<(), ComponentError> {
        let secs = ctx.config.timeouts.readiness;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let script = ready_script(&Postgres::rest_url(&hx.host));
        let last = loop {
            let out = run(hx, &script).await?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() + POLL_INTERVAL > deadline {
                break out.stdout_str().trim().to_string();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let name = &hx.host.hostname;
        let first = Postgres::members(ctx)
            .first()
            .is_some_and(|h| &h.hostname == name);
        Err(if last.starts_with("replica") {
            replication_broken(format!("{name}: {last}"), secs)
        } else if first {
            ComponentError::Bootstrap {
                component: "postgres".into(),
                reason: format!(
                    "Patroni on {name} did not become the primary within {secs}s ({last}); see \
                     `journalctl -u patroni -n 100` on {name}"
                ),
            }
        } else {
            ComponentError::Readiness {
                what: format!("Patroni on {name} to run PostgreSQL ({last})"),
                secs,
            }
        })
    }

    async fn converge_cluster(
        &self,
        ctx: &Context,
        hosts: &[HostExec],
    ) -> Result<Vec<ClusterChange>, ComponentError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let secs = ctx.config.timeouts.readiness;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // Patroni bootstraps and joins by itself; this step only waits and checks.
            let why = match observe(ctx, hosts).await? {
                Ok(leader) => return app_role(ctx, hosts, &leader).await,
                Err(why) => why,
            };
            if Instant::now() + POLL_INTERVAL > deadline {
                return Err(replication_broken(why, secs));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn health_probes(&self, _ctx: &Context, host: &Host) -> Vec<Probe> {
        health::probes(host)
    }

    /// Members running, one leader, every replica streaming stably within the lag
    /// thresholds on the leader's timeline, a synchronous standby in synchronous mode.
    fn health_checks(&self, ctx: &Context, raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
        health::checks(ctx, raw)
    }

    /// PostgreSQL on the host's address and 127.0.0.1, Patroni's REST API on the host's.
    fn listens(&self, _ctx: &Context, host: &Host) -> Vec<Listen> {
        let lo = IpAddr::from([127, 0, 0, 1]);
        vec![
            Listen::new("PostgreSQL member", PG_PORT, &[host.ip, lo], &["postgres"])
                .marker(CONFIG_PATH)
                .auth("SCRAM-SHA-256; superuser on the local socket only"),
            // Patroni runs from its own script; some Pythons name the process after the
            // interpreter.
            Listen::new(
                "Patroni REST",
                REST_PORT,
                &[host.ip],
                &["patroni", "python3"],
            )
            .marker(CONFIG_PATH)
            .auth("basic auth from members on changes, GETs open"),
        ]
    }

    /// Debian's default cluster of the version kbz installs: module 5 disables it (its data
    /// is kept), so it is a warning.
    fn conflicts(&self, ctx: &Context, _host: &Host) -> Vec<kbz_core::component::Conflict> {
        let version = ctx
            .config
            .versions
            .get("postgres")
            .cloned()
            .unwrap_or_else(|| DEFAULT_VERSION.into());
        vec![kbz_core::component::Conflict {
            path: format!("/etc/postgresql/{version}/main/postgresql.conf"),
            line_prefix: None,
            what: format!("Debian's default PostgreSQL cluster {version}/main"),
            fix: "module 5 stops and disables it (its data is kept); back it up first if it holds data (`pg_dumpall`)".into(),
            severity: kbz_core::preflight::Severity::Warning,
        }]
    }

    fn uninstall(&self, ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let version = Postgres::version(ctx)?;
        let mut r = vec![Resource::stopped_service(SERVICE)];
        r.extend(
            Postgres::packages(&version)
                .into_iter()
                // curl is shared with module 1.
                .filter(|p| p != "curl")
                .map(|name| Resource::absent_package(&name)),
        );
        r.push(Resource::absent_file(CONFIG_PATH));
        r.push(Resource::absent_file(PGPASS_PATH));
        r.push(Resource::absent_file(CREATECLUSTER_PATH));
        r.extend(patroni::uninstall(ctx));
        r.extend(tls::uninstall());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::{Config, Inventory, Secrets};

    fn ctx(subnet: Option<&str>) -> Context {
        let roles = [Role::Etcd, Role::Postgres];
        let inv = Inventory {
            path: "servers.tsv".into(),
            hosts: vec![
                Host::new("lb1", "10.0.0.5".parse().expect("ip"), &[Role::Lb]),
                Host::new("db1", "10.0.0.11".parse().expect("ip"), &roles),
                Host::new("db2", "10.0.0.12".parse().expect("ip"), &roles),
                Host::new("db3", "10.0.0.13".parse().expect("ip"), &roles),
            ],
        };
        let mut cfg = Config::default();
        cfg.cluster.subnet = subnet.map(|s| s.parse().expect("net"));
        Context::new(inv, cfg, Secrets::placeholders(Postgres.secret_names()))
    }

    #[test]
    fn failover_timings_keep_patronis_rule_and_minimums() {
        assert!(dcs_timing_ok(TTL, LOOP_WAIT, RETRY_TIMEOUT));
        // The rule itself: Patroni's defaults pass, a ttl too short for the retries does not.
        assert!(dcs_timing_ok(30, 10, 10));
        assert!(!dcs_timing_ok(20, 10, 10));
        assert!(!dcs_timing_ok(15, 1, 3));
        assert!(!dcs_timing_ok(20, 5, 2));
        // The rendered values are these constants.
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        let y = Postgres::config(&c, &host).expect("render");
        assert!(y.contains(&format!("    ttl: {TTL}\n")), "{y}");
        assert!(y.contains(&format!("    loop_wait: {LOOP_WAIT}\n")), "{y}");
        assert!(
            y.contains(&format!("    retry_timeout: {RETRY_TIMEOUT}\n")),
            "{y}"
        );
    }

    #[test]
    fn pg_hba_from_the_subnet() {
        let hba = pg_hba(&ctx(Some("10.0.0.0/24")));
        assert_eq!(
            hba,
            vec![
                "local all all peer",
                "host all postgres 0.0.0.0/0 reject",
                "host all postgres ::/0 reject",
                "host replication replicator 127.0.0.1/32 scram-sha-256",
                "host replication replicator ::1/128 scram-sha-256",
                "host replication replicator 10.0.0.0/24 scram-sha-256",
                "host postgres rewind_user 10.0.0.0/24 scram-sha-256",
                "host app app 127.0.0.1/32 scram-sha-256",
                "host app app ::1/128 scram-sha-256",
                "host app app 10.0.0.0/24 scram-sha-256",
            ]
        );
        // Every TCP line that admits anyone uses SCRAM: no trust, no md5, no password in
        // clear; none admits the superuser or every role.
        for l in hba.iter().filter(|l| l.starts_with("host")) {
            assert!(
                l.ends_with(" scram-sha-256")
                    || l.ends_with(" postgres 0.0.0.0/0 reject")
                    || l.ends_with(" postgres ::/0 reject"),
                "{l}"
            );
            assert!(!l.contains(" all all "), "{l}");
            if l.contains(" postgres ") && !l.starts_with("host postgres rewind_user") {
                assert!(l.ends_with(" reject"), "{l}");
            }
        }
    }

    #[test]
    fn pg_hba_names_the_configured_application_role() {
        let mut c = ctx(Some("10.0.0.0/24"));
        let mut cfg = (*c.config).clone();
        cfg.postgres.app_user = "shop".into();
        cfg.postgres.app_database = "shopdb".into();
        c.config = std::sync::Arc::new(cfg);
        let hba = pg_hba(&c);
        assert!(
            hba.contains(&"host shopdb shop 10.0.0.0/24 scram-sha-256".into()),
            "{hba:?}"
        );
        assert!(!hba.iter().any(|l| l.contains(" app ")), "{hba:?}");
        // With TLS the network lines need it; loopback and the superuser's refusals stay.
        let ssl = tls::hostssl(hba);
        assert!(ssl.contains(&"hostssl shopdb shop 10.0.0.0/24 scram-sha-256".into()));
        assert!(ssl.contains(&"hostssl postgres rewind_user 10.0.0.0/24 scram-sha-256".into()));
        assert!(ssl.contains(&"host all postgres 0.0.0.0/0 reject".into()));
        assert!(ssl.contains(&"host shopdb shop 127.0.0.1/32 scram-sha-256".into()));
    }

    #[test]
    fn pg_hba_without_a_subnet_lists_the_inventory_hosts() {
        let hba = pg_hba(&ctx(None));
        assert!(hba.contains(&"host replication replicator 10.0.0.12/32 scram-sha-256".into()));
        assert!(hba.contains(&"host app app 10.0.0.5/32 scram-sha-256".into()));
        assert!(hba.contains(&"host postgres rewind_user 10.0.0.13/32 scram-sha-256".into()));
        assert!(!hba
            .iter()
            .any(|l| l.contains("0.0.0.0/0") && !l.ends_with(" reject")));
    }

    #[test]
    fn patroni_connects_locally_over_the_socket() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        let y = Postgres::config(&c, &host).expect("render");
        assert!(y.contains("\n  use_unix_socket: true\n"), "{y}");
        assert!(
            y.contains("    unix_socket_directories: /var/run/postgresql\n"),
            "{y}"
        );
    }

    #[test]
    fn config_names_this_member_and_every_etcd_host() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db2").expect("db2").clone();
        let y = Postgres::config(&c, &host).expect("render");
        for want in [
            "name: \"db2\"\n",
            "scope: \"kbz\"\n",
            "  listen: \"10.0.0.12:8008\"\n",
            "  connect_address: \"10.0.0.12:8008\"\n",
            "  - \"10.0.0.11:2379\"\n  - \"10.0.0.12:2379\"\n  - \"10.0.0.13:2379\"\n",
            "  listen: \"10.0.0.12,127.0.0.1:5432\"\n",
            "  connect_address: \"10.0.0.12:5432\"\n",
            "  data_dir: \"/var/lib/postgresql/15/kbz\"\n",
            "  bin_dir: \"/usr/lib/postgresql/15/bin\"\n",
            "    synchronous_mode: true\n",
            "      password: \"postgres_replication_password-PLACEHOLDER\"\n",
        ] {
            assert!(y.contains(want), "missing {want:?} in\n{y}");
        }
    }

    #[test]
    fn synchronous_mode_follows_the_config() {
        let mut c = ctx(Some("10.0.0.0/24"));
        let mut cfg = (*c.config).clone();
        cfg.postgres.synchronous_mode = false;
        c.config = std::sync::Arc::new(cfg);
        let host = c.inventory.host("db1").expect("db1").clone();
        let y = Postgres::config(&c, &host).expect("render");
        assert!(y.contains("    synchronous_mode: false\n"), "{y}");
    }

    #[test]
    fn version_pin() {
        let mut c = ctx(None);
        let mut cfg = (*c.config).clone();
        cfg.versions.insert("postgres".into(), "16".into());
        c.config = std::sync::Arc::new(cfg.clone());
        assert_eq!(Postgres::version(&c).expect("16"), "16");
        assert_eq!(Postgres::bin_dir("16"), "/usr/lib/postgresql/16/bin");
        cfg.versions.insert("postgres".into(), "15.4".into());
        c.config = std::sync::Arc::new(cfg);
        let e = Postgres::version(&c).expect_err("minor version");
        assert_eq!(kbz_errors::HasCode::code(&e), Code::E008);
    }

    #[test]
    fn config_is_private_and_written_after_the_packages() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        let r = Postgres.desired(&c, &host).expect("desired");
        let pos = |id: &str| r.iter().position(|x| x.id() == id).expect(id);
        assert!(pos(&format!("file:{CREATECLUSTER_PATH}")) < pos("package:postgresql-15"));
        assert!(pos("package:patroni") < pos("command:postgresql-debian-units-off"));
        assert!(pos("command:postgresql-debian-units-off") < pos("service:patroni"));
        assert!(pos("command:patroni-reload-on-rollback") < pos(&format!("file:{CONFIG_PATH}")));
        assert!(pos(&format!("file:{CONFIG_PATH}")) < pos("command:patroni-reload"));
        match &r[pos(&format!("file:{CONFIG_PATH}"))] {
            Resource::File { mode, owner, .. } => {
                assert_eq!(*mode, 0o600);
                assert_eq!(owner, "postgres:postgres");
            }
            o => panic!("{o:?}"),
        }
        // Patroni is reloaded, never restarted, by a config change; only a new Patroni
        // release (its wrapper or the unit's drop-in) restarts it.
        match &r[pos("service:patroni")] {
            Resource::Service { restart_on, .. } => {
                assert!(!restart_on.contains(&CONFIG_PATH.to_string()));
                assert_eq!(restart_on, &[PATRONI_BIN, PATRONI_DROPIN]);
            }
            o => panic!("{o:?}"),
        }
        // The pinned Patroni is in place before the unit starts.
        for id in [
            format!(
                "artifact:/opt/kbz/artifacts/{}",
                patroni_wheel_file(DEFAULT_PATRONI_VERSION)
            ),
            "command:patroni-unpack".into(),
            format!("file:{PATRONI_BIN}"),
            format!("file:{PATRONI_DROPIN}"),
            "command:patroni-unit-reload".into(),
        ] {
            assert!(pos(&id) > pos("package:patroni"), "{id}");
            assert!(pos(&id) < pos("service:patroni"), "{id}");
        }
    }

    #[test]
    fn patroni_is_the_pinned_release_and_overridable() {
        let mut c = ctx(Some("10.0.0.0/24"));
        let a = patroni_pin(&c);
        assert_eq!(a, patroni_default_pin());
        assert_eq!(a.version, DEFAULT_PATRONI_VERSION);
        assert!(a.check().is_empty(), "{:?}", a.check());
        let host = c.inventory.host("db1").expect("db1").clone();
        let r = Postgres.desired(&c, &host).expect("desired");
        let wheel = format!(
            "/opt/kbz/artifacts/{}",
            patroni_wheel_file(DEFAULT_PATRONI_VERSION)
        );
        assert!(r.contains(&Resource::artifact(&wheel, &a, 0o644)), "{r:?}");
        // The unit runs the wrapper; the wrapper runs the unpacked release.
        assert!(
            patroni_dropin().contains(&format!("ExecStart={PATRONI_BIN} /etc/patroni/config.yml"))
        );
        let wrapper = r
            .iter()
            .find_map(|x| match x {
                Resource::File { path, content, .. } if path == PATRONI_BIN => {
                    Some(String::from_utf8_lossy(content).into_owned())
                }
                _ => None,
            })
            .expect("wrapper");
        assert!(wrapper.contains(&format!(
            "PYTHONPATH={}",
            patroni_install_dir(DEFAULT_PATRONI_VERSION)
        )));
        assert!(
            wrapper.contains("exec /usr/bin/python3 -m patroni \"$@\""),
            "{wrapper}"
        );
        // `[artifacts.patroni]` moves every path to the new version.
        let mut cfg = (*c.config).clone();
        cfg.artifacts.insert(
            "patroni".into(),
            kbz_core::artifact::ArtifactOverride {
                version: "4.1.4".into(),
                sha256: "b".repeat(64),
                source: None,
            },
        );
        c.config = std::sync::Arc::new(cfg);
        let p = patroni_pin(&c);
        assert_eq!(
            (p.version.as_str(), p.source.as_str()),
            ("4.1.4", "pip:patroni")
        );
        let r = Postgres.desired(&c, &host).expect("desired");
        assert!(r
            .iter()
            .any(|x| x.id() == "artifact:/opt/kbz/artifacts/patroni-4.1.4-py3-none-any.whl"));
    }

    #[test]
    fn reload_only_when_patroni_already_runs_with_another_config() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        let r = Postgres.desired(&c, &host).expect("desired");
        let config = Postgres::config(&c, &host).expect("render");
        let hash = kbz_core::shell::sha256_hex(config.as_bytes());
        for id in ["patroni-reload", "patroni-reload-on-rollback"] {
            let guard = r
                .iter()
                .find_map(|x| match x {
                    Resource::Command { id: i, unless, .. } if i == id => unless.clone(),
                    _ => None,
                })
                .expect(id);
            assert!(guard.contains(&hash), "{id}: {guard}");
            assert!(
                guard.contains("|| ! systemctl is-active -q patroni.service"),
                "{id}: {guard}"
            );
        }
    }

    /// A running Patroni whose file names another etcd protocol is marked for a restart
    /// before the file changes (a SIGHUP would leave its etcd client on the old protocol),
    /// and a rollback restarts it onto the old file too.
    #[test]
    fn a_changed_etcd_protocol_restarts_patroni_instead_of_reloading_it() {
        for tls in [false, true] {
            let plain = ctx(Some("10.0.0.0/24"));
            let c = if tls {
                kbz_testkit::with_tls(&plain)
            } else {
                plain
            };
            let host = c.inventory.host("db1").expect("db1").clone();
            let r = Postgres.desired(&c, &host).expect("desired");
            let pos = |id: &str| r.iter().position(|x| x.id() == id).expect(id);
            assert!(pos("command:patroni-etcd-protocol") < pos(&format!("file:{CONFIG_PATH}")));
            let Some(Resource::Command {
                script,
                unless: Some(guard),
                undo: Some(undo),
                ..
            }) = r.iter().find(|x| x.id() == "command:patroni-etcd-protocol")
            else {
                panic!("no patroni-etcd-protocol command");
            };
            assert_eq!(script, &format!("touch {RESTART_MARK}"));
            assert_eq!(undo, script);
            let want = if tls { "= \"https\" ]" } else { "= \"\" ]" };
            assert!(guard.ends_with(want), "{guard}");
            assert!(guard.starts_with("! systemctl is-active -q patroni.service ||"));
            let reload = r
                .iter()
                .find_map(|x| match x {
                    Resource::Command { id, script, .. } if id == "patroni-reload" => {
                        Some(script.clone())
                    }
                    _ => None,
                })
                .expect("patroni-reload");
            assert!(
                reload.starts_with(&format!(
                    "if [ -e {RESTART_MARK} ]; then rm -f {RESTART_MARK}; systemctl restart patroni.service;"
                )),
                "{reload}"
            );
        }
    }

    /// `sh -n` (parse only, runs nothing) accepts every script this component sends.
    #[test]
    fn every_script_is_valid_sh() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        let mut scripts = vec![
            ready_script(&Postgres::rest_url(&host)),
            cluster_script(&Postgres::rest_url(&host)),
            psql_script(REPLICATION_QUERY),
        ];
        let resources = Postgres.desired(&c, &host).expect("desired");
        scripts.extend(
            resources
                .iter()
                .flat_map(|r| r.scripts())
                .map(str::to_string),
        );
        kbz_testkit::assert_valid_sh(&scripts);
    }

    #[test]
    fn no_secret_in_any_command() {
        let c = ctx(Some("10.0.0.0/24"));
        let host = c.inventory.host("db1").expect("db1").clone();
        for r in Postgres.desired(&c, &host).expect("desired") {
            if let Resource::Command {
                script,
                unless,
                undo,
                ..
            } = r
            {
                let all = format!("{script}{unless:?}{undo:?}");
                assert!(!all.contains("PLACEHOLDER"), "{all}");
            }
        }
    }

    #[test]
    fn without_etcd_hosts_rendering_says_what_to_add() {
        let mut c = ctx(None);
        let mut inv = (*c.inventory).clone();
        for h in &mut inv.hosts {
            h.roles.remove(&Role::Etcd);
        }
        c.inventory = std::sync::Arc::new(inv);
        let host = c.inventory.host("db1").expect("db1").clone();
        let e = Postgres::config(&c, &host).expect_err("no etcd");
        assert_eq!(kbz_errors::HasCode::code(&e), Code::E034);
        assert!(e.to_string().contains("etcd role"), "{e}");
    }
}
