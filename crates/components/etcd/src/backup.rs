//! etcd's backups ([`kbz_core::backup::Backup`]): `etcdctl snapshot save` on a healthy
//! member, with its revision, etcd's own hash, the key count at that revision and a canary
//! key kbz writes just before; a restore re-forms the whole cluster from the snapshot (stop
//! etcd on every member, a new data directory on each from `snapshot restore` with the
//! inventory's `--initial-cluster`, start every member, wait for health, check the canary);
//! a drill restores into a scratch single-member etcd on the backup host (loopback ports
//! [`DRILL_CLIENT_PORT`]/[`DRILL_PEER_PORT`]), compares key count and canary, and removes it.
//!
//! Paths and service control come from [`Layout`]: Debian's on real hosts, per-host
//! directories and a control script in the loopback tests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbz_core::backup::{
    compare, Artifact, Backup, BackupEnv, BackupError, BackupKind, BackupRequest, Contents,
    Drilled, Manifest, RestorePlan, Restored, Taken,
};
use kbz_core::component::HostExec;
use kbz_core::shell::quote;
use kbz_core::{Cmd, Context, Host, Output, Role};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{client_flags, url, Etcd, CLIENT_PORT, DATA_DIR, PEER_PORT};

/// The key kbz writes before each snapshot (its value is the backup's id); drills and
/// restores check it.
pub const CANARY_KEY: &str = "/kbz/backup-canary";
/// The scratch etcd's client port on the backup host (127.0.0.1 only).
pub const DRILL_CLIENT_PORT: u16 = 12379;
/// The scratch etcd's peer port.
pub const DRILL_PEER_PORT: u16 = 12380;

const COMPONENT: &str = "etcd";

/// Where etcd keeps its data and how it is stopped and started on a host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// `None` on real hosts; in loopback tests each host's data directory is
    /// `root/<hostname>/data` and `root/<hostname>/ctl start|stop` controls its etcd.
    pub root: Option<PathBuf>,
    /// Client port (2379).
    pub client_port: u16,
    /// Peer port (2380).
    pub peer_port: u16,
    /// The drill's scratch etcd: client and peer port on 127.0.0.1 of the backup host.
    pub drill_ports: (u16, u16),
}

impl Layout {
    /// Debian's package and kbz's data directory.
    pub fn debian() -> Self {
        Layout {
            root: None,
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
            drill_ports: (DRILL_CLIENT_PORT, DRILL_PEER_PORT),
        }
    }

    /// The member's data directory.
    pub fn data_dir(&self, host: &Host) -> String {
        match &self.root {
            None => DATA_DIR.into(),
            Some(r) => format!("{}/{}/data", r.display(), host.hostname),
        }
    }

    /// The command that stops (`stop`) or starts (`start`) etcd on `host`.
    pub fn service(&self, host: &Host, action: &str) -> String {
        match &self.root {
            None => format!("systemctl {action} etcd"),
            Some(r) => format!(
                "sh {} {action}",
                quote(&format!("{}/{}/ctl", r.display(), host.hostname))
            ),
        }
    }

    /// A staging file on the member (`/var/tmp/NAME`; under the host's root in tests).
    pub fn tmp(&self, host: &Host, name: &str) -> String {
        match &self.root {
            None => format!("/var/tmp/{name}"),
            Some(r) => format!("{}/{}/{name}", r.display(), host.hostname),
        }
    }

    /// The owner of restored data directories (`etcd:etcd` on real hosts).
    fn chown(&self, dir: &str) -> String {
        match &self.root {
            None => format!("chown -R etcd:etcd {d}\nchmod 0700 {d}\n", d = quote(dir)),
            Some(_) => format!("chmod 0700 {}\n", quote(dir)),
        }
    }

    fn url(&self, tls: bool, host: &Host, peer: bool) -> String {
        url(
            tls,
            host.ip,
            if peer {
                self.peer_port
            } else {
                self.client_port
            },
        )
    }

    /// `etcdctl` against one member's client URL (TLS with the member certificate when
    /// `tls`), with `timeout` seconds for the command.
    pub fn ctl(&self, tls: bool, host: &Host, args: &str, timeout: u64) -> String {
        format!(
            "ETCDCTL_API=3 etcdctl --endpoints={}{} --dial-timeout=3s --command-timeout={timeout}s {args}",
            self.url(tls, host, false),
            client_flags(tls)
        )
    }

    /// `--initial-cluster` of the inventory's members.
    pub fn initial_cluster(&self, tls: bool, members: &[&Host]) -> String {
        members
            .iter()
            .map(|h| format!("{}={}", h.hostname, self.url(tls, h, true)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The snapshot's staging file on the member.
fn staging(layout: &Layout, host: &Host, id: &str) -> String {
    layout.tmp(host, &format!("kbz-backup-etcd-{id}.db"))
}

/// `snapshot restore` with etcdutl where it exists (etcd 3.5+), etcdctl otherwise.
fn restore_cmd(snapshot: &str, args: &str) -> String {
    format!(
        "if command -v etcdutl >/dev/null 2>&1; then etcdutl snapshot restore {s} {args}; else ETCDCTL_API=3 etcdctl snapshot restore {s} {args}; fi",
        s = quote(snapshot)
    )
}

/// The backup script on the member: write the canary, save the snapshot, print its status
/// (JSON), the key count at its revision and etcdctl's version, in `@@` sections.
pub fn snapshot_script(layout: &Layout, tls: bool, host: &Host, id: &str) -> String {
    let f = staging(layout, host, id);
    let ctl = |args: &str, t: u64| layout.ctl(tls, host, args, t);
    format!(
        "set -e\numask 077\nf={f}\nrm -f \"$f\"\n{put} >/dev/null\n{save} >/dev/null\necho '@@ status'\nETCDCTL_API=3 etcdctl snapshot status \"$f\" -w json\nrev=$(ETCDCTL_API=3 etcdctl snapshot status \"$f\" -w json | sed -n 's/.*\"revision\":\\([0-9]*\\).*/\\1/p')\necho '@@ count'\n{count}\necho '@@ version'\nETCDCTL_API=3 etcdctl version | head -n 1\n",
        f = quote(&f),
        put = ctl(&format!("put {CANARY_KEY} {}", quote(id)), 10),
        save = ctl("snapshot save \"$f\"", 300),
        count = ctl("get '' --prefix --keys-only --limit=1 -w json --rev=\"$rev\"", 30),
    )
}

/// What [`snapshot_script`] printed: revision, etcd's hash, key count, tool version.
pub fn parse_snapshot(out: &str) -> Result<Contents, String> {
    let section = |name: &str| -> String {
        let mut lines = out.lines().skip_while(|l| *l != format!("@@ {name}"));
        lines.next();
        lines
            .take_while(|l| !l.starts_with("@@ "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let status: serde_json::Value = serde_json::from_str(section("status").trim())
        .map_err(|e| format!("snapshot status is not JSON ({e}): {}", section("status")))?;
    let count: serde_json::Value = serde_json::from_str(section("count").trim())
        .map_err(|e| format!("the key count is not JSON ({e}): {}", section("count")))?;
    let mut c = Contents::new();
    c.insert("revision".into(), status["revision"].clone());
    c.insert("etcd_hash".into(), status["hash"].clone());
    c.insert("total_size".into(), status["totalSize"].clone());
    c.insert(
        "key_count".into(),
        count.get("count").cloned().unwrap_or(serde_json::json!(0)),
    );
    c.insert(
        "tool_version".into(),
        serde_json::json!(section("version").trim()),
    );
    if !c["revision"].is_u64() {
        return Err(format!("snapshot status has no revision: {status}"));
    }
    Ok(c)
}

/// Restores `snapshot` (already on the member) into a new data directory and swaps it in
/// for the member's own, keeping the previous one as `DATA.kbz-before-restore`. etcd must
/// be stopped.
pub fn restore_script(
    layout: &Layout,
    tls: bool,
    host: &Host,
    members: &[&Host],
    token: &str,
    snapshot: &str,
) -> String {
    let data = layout.data_dir(host);
    let new = format!("{data}.kbz-restore");
    let old = format!("{data}.kbz-before-restore");
    format!(
        "set -e\nrm -rf {n}\n{restore}\nrm -rf {o}\nif [ -e {d} ]; then mv {d} {o}; fi\nmv {n} {d}\n{chown}rm -f {s}\n",
        n = quote(&new),
        o = quote(&old),
        d = quote(&data),
        s = quote(snapshot),
        restore = restore_cmd(
            snapshot,
            &format!(
                "--name {} --initial-cluster {} --initial-cluster-token {} --initial-advertise-peer-urls {} --data-dir {}",
                quote(&host.hostname),
                quote(&layout.initial_cluster(tls, members)),
                quote(token),
                quote(&layout.url(tls, host, true)),
                quote(&new)
            )
        ),
        chown = layout.chown(&data),
    )
}

/// Starts etcd, three tries two seconds apart ([`kbz_core::shell::retried_start`]); the
/// last try's output is what a failure reports.
pub fn start_script(layout: &Layout, host: &Host) -> String {
    kbz_core::shell::retried_start(&layout.service(host, "start"))
}

/// Deletes `keys` (a key ending in `/` with `--prefix`) through one member and prints the
/// number of keys each deletion removed, one per line.
pub fn drop_keys_script(layout: &Layout, tls: bool, host: &Host, keys: &[String]) -> String {
    let mut s = String::from("set -e\n");
    for k in keys {
        let args = if k.ends_with('/') {
            format!("del --prefix {}", quote(k))
        } else {
            format!("del {}", quote(k))
        };
        s.push_str(&layout.ctl(tls, host, &args, 30));
        s.push('\n');
    }
    s
}

/// The scratch directory of a drill on the backup host.
fn drill_dir(id: &str) -> String {
    format!("/var/tmp/kbz-drill-etcd-{id}")
}

/// Starts the scratch etcd from `DIR/snap.db`, waits until it answers, prints its key count
/// and the canary's value in `@@` sections. Plain HTTP on 127.0.0.1 only.
pub fn drill_script(id: &str, client: u16, peer: u16) -> String {
    let d = drill_dir(id);
    let peer_url = format!("http://127.0.0.1:{peer}");
    let client_url = format!("http://127.0.0.1:{client}");
    let ctl = format!(
        "ETCDCTL_API=3 etcdctl --endpoints={client_url} --dial-timeout=2s --command-timeout=10s"
    );
    format!(
        "set -e\nd={d}\n{restore} >\"$d/restore.log\" 2>&1 || {{ cat \"$d/restore.log\"; exit 1; }}\n\
         setsid etcd --name kbz-drill --data-dir \"$d/data\" --listen-client-urls {client_url} --advertise-client-urls {client_url} --listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} --initial-cluster kbz-drill={peer_url} >\"$d/etcd.log\" 2>&1 </dev/null &\n\
         echo $! >\"$d/pid\"\n\
         i=0\nuntil {ctl} endpoint health >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge 60 ]; then echo 'the scratch etcd did not answer in 30 s:'; tail -n 20 \"$d/etcd.log\"; exit 1; fi; sleep 0.5; done\n\
         echo '@@ count'\n{ctl} get '' --prefix --keys-only --limit=1 -w json\necho '@@ canary'\n{ctl} get {CANARY_KEY} --print-value-only\necho '@@ end'\n",
        d = quote(&d),
        restore = restore_cmd(
            &format!("{d}/snap.db"),
            &format!(
                "--name kbz-drill --initial-cluster kbz-drill={peer_url} --initial-advertise-peer-urls {peer_url} --data-dir \"$d/data\""
            )
        ),
    )
}

/// Stops the scratch etcd (by its pid) and removes the drill's directory; always safe.
pub fn drill_cleanup_script(id: &str) -> String {
    format!(
        "d={d}\nif [ -f \"$d/pid\" ]; then p=$(cat \"$d/pid\"); kill \"$p\" 2>/dev/null || true; i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -9 \"$p\" 2>/dev/null || true; fi\nrm -rf \"$d\"\n",
        d = quote(&drill_dir(id))
    )
}

/// The key count and canary a drill printed.
pub fn parse_drill(out: &str) -> Contents {
    let section = |name: &str| -> String {
        let mut lines = out.lines().skip_while(|l| *l != format!("@@ {name}"));
        lines.next();
        lines
            .take_while(|l| !l.starts_with("@@ "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut c = Contents::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(section("count").trim()) {
        c.insert(
            "key_count".into(),
            v.get("count").cloned().unwrap_or(serde_json::json!(0)),
        );
    }
    c.insert("canary".into(), serde_json::json!(section("canary").trim()));
    c
}

/// etcd's [`Backup`].
#[derive(Debug, Clone)]
pub struct EtcdBackup {
    /// Paths and service control.
    pub layout: Layout,
}

impl Default for EtcdBackup {
    fn default() -> Self {
        EtcdBackup {
            layout: Layout::debian(),
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", out.stdout_str(), out.stderr_str())
        .trim()
        .to_string()
}

impl EtcdBackup {
    /// The first member whose own endpoint is healthy, in inventory order.
    async fn healthy_member<'a>(
        &self,
        ctx: &Context,
        hosts: &'a [HostExec],
    ) -> Option<&'a HostExec> {
        let tls = ctx.config.security.tls;
        for hx in hosts {
            let script = format!(
                "{} 2>&1",
                self.layout.ctl(tls, &hx.host, "endpoint health", 5)
            );
            if let Ok(out) = hx
                .exec
                .run(&Cmd::new(script).timeout(Duration::from_secs(15)))
                .await
            {
                if out.success() {
                    return Some(hx);
                }
            }
        }
        None
    }

    /// Every member healthy, asked through `runner` (`endpoint health --cluster`).
    async fn cluster_healthy(&self, ctx: &Context, hosts: &[HostExec]) -> Result<(), String> {
        let tls = ctx.config.security.tls;
        let mut last = String::from("no member answered");
        for hx in hosts {
            let script = format!(
                "{} 2>&1",
                self.layout
                    .ctl(tls, &hx.host, "endpoint health --cluster", 5)
            );
            match hx
                .exec
                .run(&Cmd::new(script).timeout(Duration::from_secs(20)))
                .await
            {
                Ok(out) if out.success() => {
                    let healthy = out
                        .stdout_str()
                        .lines()
                        .filter(|l| l.contains("is healthy"))
                        .count();
                    if healthy >= hosts.len() {
                        return Ok(());
                    }
                    last = text(&out);
                }
                Ok(out) => last = text(&out),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// Reads the key count and canary of the running cluster through `hx`.
    async fn live_contents(&self, ctx: &Context, hx: &HostExec) -> Result<Contents, String> {
        let tls = ctx.config.security.tls;
        let script = format!(
            "set -e\necho '@@ count'\n{}\necho '@@ canary'\n{}\necho '@@ end'\n",
            self.layout.ctl(
                tls,
                &hx.host,
                "get '' --prefix --keys-only --limit=1 -w json",
                10
            ),
            self.layout.ctl(
                tls,
                &hx.host,
                &format!("get {CANARY_KEY} --print-value-only"),
                10
            )
        );
        let out = hx
            .exec
            .run(&Cmd::new(script).timeout(Duration::from_secs(30)))
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(text(&out));
        }
        Ok(parse_drill(&out.stdout_str()))
    }
}

#[async_trait]
impl Backup for EtcdBackup {
    fn component(&self) -> &'static str {
        COMPONENT
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Etcd)
    }

    fn healthy_after(&self) -> Vec<&'static str> {
        vec!["etcd", "postgres"]
    }

    async fn backup(&self, env: &BackupEnv<'_>, req: &BackupRequest) -> Result<Taken, BackupError> {
        let tls = env.ctx.config.security.tls;
        let Some(hx) = self.healthy_member(env.ctx, env.hosts).await else {
            return Err(BackupError::failed(
                COMPONENT,
                "any member",
                "no etcd member answers `endpoint health`; see `kbz-health --component etcd`",
            ));
        };
        let host = &hx.host.hostname;
        let script = snapshot_script(&self.layout, tls, &hx.host, &req.id);
        let out = hx
            .exec
            .run(&Cmd::new(script).timeout(Duration::from_secs(600)))
            .await?;
        let staged = staging(&self.layout, &hx.host, &req.id);
        let cleanup = Cmd::new(format!("rm -f {}", quote(&staged)));
        if !out.success() {
            let _ = hx.exec.run(&cleanup).await;
            return Err(BackupError::failed(
                COMPONENT,
                host,
                format!("etcdctl snapshot save: {}", text(&out)),
            ));
        }
        let time = Utc::now();
        let mut contents = match parse_snapshot(&out.stdout_str()) {
            Ok(c) => c,
            Err(e) => {
                let _ = hx.exec.run(&cleanup).await;
                return Err(BackupError::failed(COMPONENT, host, e));
            }
        };
        contents.insert("canary".into(), serde_json::json!(req.id));
        let tool_version = contents
            .remove("tool_version")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "etcdctl".into());
        let bytes = hx.exec.read_file(&staged).await;
        let _ = hx.exec.run(&cleanup).await;
        let bytes = bytes?.ok_or_else(|| {
            BackupError::failed(
                COMPONENT,
                host,
                format!("{staged} vanished after the snapshot"),
            )
        })?;
        Ok(Taken {
            kind: BackupKind::Full,
            source_host: host.clone(),
            time,
            tool_version,
            contents,
            artifact: Some(Artifact {
                file: "snapshot.db".into(),
                bytes,
            }),
            label: None,
            size_bytes: 0,
        })
    }

    async fn restore_plan(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        _at: Option<DateTime<Utc>>,
    ) -> Result<RestorePlan, BackupError> {
        let running = self.cluster_healthy(env.ctx, env.hosts).await.is_ok();
        let stops = env
            .hosts
            .iter()
            .map(|h| (h.host.hostname.clone(), "etcd".to_string()))
            .collect();
        let names: Vec<&str> = env.hosts.iter().map(|h| h.host.hostname.as_str()).collect();
        let mut steps = vec![format!(
            "{}: read {} ({} of snapshot, revision {}) from the repository, check its sha256 and decrypt it",
            env.repo.host(),
            m.id,
            kbz_core::backup::repo::human(m.size_bytes),
            m.contents.get("revision").cloned().unwrap_or_default()
        )];
        for hx in env.hosts {
            steps.push(format!(
                "{}: stop etcd (`{}`)",
                hx.host.hostname,
                self.layout.service(&hx.host, "stop")
            ));
        }
        for n in &names {
            steps.push(format!(
                "{n}: write the snapshot to /var/tmp, `snapshot restore` it into a new data directory with --initial-cluster of {} members, keep the old one as {}.kbz-before-restore",
                names.len(),
                DATA_DIR
            ));
        }
        for n in &names {
            steps.push(format!("{n}: start etcd"));
        }
        steps.push(format!(
            "wait until every member is healthy, then check the key count ({}) and the canary {CANARY_KEY}",
            m.contents.get("key_count").cloned().unwrap_or_default()
        ));
        steps.push("wait until kbz-health's etcd and postgres checks pass (Patroni keeps its state in etcd)".into());
        Ok(RestorePlan {
            running,
            stops,
            steps,
        })
    }

    async fn restore(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        artifact: Option<&[u8]>,
        _at: Option<DateTime<Utc>>,
    ) -> Result<Restored, BackupError> {
        let tls = env.ctx.config.security.tls;
        let Some(bytes) = artifact else {
            return Err(BackupError::restore(
                COMPONENT,
                env.repo.host(),
                "no snapshot bytes to restore",
            ));
        };
        let members: Vec<&Host> = env.hosts.iter().map(|h| &h.host).collect();
        let token = Etcd::token(env.ctx);
        let snap = |h: &Host| self.layout.tmp(h, &format!("kbz-restore-etcd-{}.db", m.id));
        // Every member gets the snapshot first: nothing stops before each has it.
        for hx in env.hosts {
            let snap = snap(&hx.host);
            hx.exec
                .put_file(&snap, bytes, 0o600, "root:root")
                .await
                .map_err(|e| BackupError::restore(COMPONENT, &hx.host.hostname, e.to_string()))?;
        }
        let run = |hx: &HostExec, script: String, what: &'static str| {
            let hx = hx.clone();
            async move {
                let out = hx
                    .exec
                    .run(&Cmd::new(script).timeout(Duration::from_secs(300)))
                    .await
                    .map_err(|e| {
                        BackupError::restore(COMPONENT, &hx.host.hostname, e.to_string())
                    })?;
                if out.success() {
                    Ok(())
                } else {
                    Err(BackupError::restore(
                        COMPONENT,
                        &hx.host.hostname,
                        format!("{what}: {}", text(&out)),
                    ))
                }
            }
        };
        for hx in env.hosts {
            run(hx, self.layout.service(&hx.host, "stop"), "stop etcd").await?;
        }
        for hx in env.hosts {
            run(
                hx,
                restore_script(
                    &self.layout,
                    tls,
                    &hx.host,
                    &members,
                    &token,
                    &snap(&hx.host),
                ),
                "snapshot restore",
            )
            .await?;
        }
        // Start every member at once: each waits for a quorum of the others.
        let starts: Vec<_> = env
            .hosts
            .iter()
            .map(|hx| run(hx, start_script(&self.layout, &hx.host), "start etcd"))
            .collect();
        for r in futures_join(starts).await {
            r?;
        }
        let deadline = Instant::now() + Duration::from_secs(env.ctx.config.timeouts.readiness);
        loop {
            match self.cluster_healthy(env.ctx, env.hosts).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(BackupError::restore(
                        COMPONENT,
                        &env.hosts[0].host.hostname,
                        format!(
                            "the restored cluster is not healthy after {} s: {e}",
                            env.ctx.config.timeouts.readiness
                        ),
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        let live = self
            .live_contents(env.ctx, &env.hosts[0])
            .await
            .map_err(|e| BackupError::restore(COMPONENT, &env.hosts[0].host.hostname, e))?;
        let expected = m.contents.get("canary").cloned().unwrap_or_default();
        if live.get("canary") != Some(&expected) {
            return Err(BackupError::restore(
                COMPONENT,
                &env.hosts[0].host.hostname,
                format!(
                    "the restored cluster's canary {CANARY_KEY} is {}, the backup recorded {expected}",
                    live.get("canary").cloned().unwrap_or_default()
                ),
            ));
        }
        Ok(Restored {
            detail: format!(
                "{} members healthy, {} keys, canary {CANARY_KEY} = {expected}",
                env.hosts.len(),
                live.get("key_count").cloned().unwrap_or_default()
            ),
            contents: live,
        })
    }

    async fn drop_keys(&self, env: &BackupEnv<'_>, keys: &[String]) -> Result<u64, BackupError> {
        let tls = env.ctx.config.security.tls;
        let mut last = String::new();
        for hx in env.hosts {
            let out = hx
                .exec
                .run(
                    &Cmd::new(drop_keys_script(&self.layout, tls, &hx.host, keys))
                        .timeout(Duration::from_secs(60)),
                )
                .await;
            match out {
                Ok(o) if o.success() => {
                    return Ok(o
                        .stdout_str()
                        .lines()
                        .filter_map(|l| l.trim().parse::<u64>().ok())
                        .sum())
                }
                Ok(o) => last = format!("{}: {}", hx.host.hostname, text(&o)),
                Err(e) => last = format!("{}: {e}", hx.host.hostname),
            }
        }
        Err(BackupError::restore(
            COMPONENT,
            env.hosts
                .first()
                .map(|h| h.host.hostname.as_str())
                .unwrap_or(""),
            format!("the keys {} could not be deleted: {last}", keys.join(", ")),
        ))
    }

    async fn drill(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        artifact: Option<&[u8]>,
    ) -> Result<Drilled, BackupError> {
        let bh = env.backup_host;
        let host = bh.host.hostname.clone();
        let Some(bytes) = artifact else {
            return Err(BackupError::drill(
                COMPONENT,
                &host,
                "no snapshot bytes to drill with",
            ));
        };
        let started = Instant::now();
        let dir = drill_dir(&m.id);
        let cleanup = Cmd::new(drill_cleanup_script(&m.id)).timeout(Duration::from_secs(30));
        let _ = bh.exec.run(&cleanup).await;
        let result = async {
            let mk = bh
                .exec
                .run(&Cmd::new(format!("command -v etcd >/dev/null || {{ echo 'etcd is not installed on the backup host: apt-get install etcd-server (and keep its service disabled), or give the backup role to an etcd host'; exit 1; }}\nmkdir -p -m 0700 {}", quote(&dir))))
                .await?;
            if !mk.success() {
                return Err(BackupError::drill(COMPONENT, &host, text(&mk)));
            }
            bh.exec.put_file(&format!("{dir}/snap.db"), bytes, 0o600, "root:root").await?;
            let out = bh
                .exec
                .run(&Cmd::new(drill_script(&m.id, self.layout.drill_ports.0, self.layout.drill_ports.1)).timeout(Duration::from_secs(120)))
                .await?;
            if !out.success() {
                return Err(BackupError::drill(COMPONENT, &host, format!("scratch etcd: {}", text(&out))));
            }
            Ok(parse_drill(&out.stdout_str()))
        }
        .await;
        let restore_ms = started.elapsed().as_millis() as u64;
        let _ = bh.exec.run(&cleanup).await;
        let got = result?;
        Ok(Drilled {
            host,
            restore_ms,
            compared: compare(&m.contents, &got, &["key_count", "canary"]),
        })
    }
}

/// Awaits every future, in order of the list (they run concurrently).
async fn futures_join<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_output_parses() {
        let out = "@@ status\n{\"hash\":123,\"revision\":42,\"totalKey\":50,\"totalSize\":20480}\n@@ count\n{\"header\":{\"revision\":42},\"count\":7}\n@@ version\netcdctl version: 3.4.23\n";
        let c = parse_snapshot(out).expect("parse");
        assert_eq!(c["revision"], 42);
        assert_eq!(c["key_count"], 7);
        assert_eq!(c["etcd_hash"], 123);
        assert_eq!(c["tool_version"], "etcdctl version: 3.4.23");
        assert!(parse_snapshot("@@ status\nError: x\n").is_err());
        let d = parse_drill("@@ count\n{\"count\":7}\n@@ canary\netcd-1\n@@ end\n");
        assert_eq!(
            (d["key_count"].clone(), d["canary"].clone()),
            (serde_json::json!(7), serde_json::json!("etcd-1"))
        );
    }

    #[test]
    fn scripts_are_valid_sh_and_keep_secrets_off_the_command_line() {
        let h = Host::new("db1", "10.0.0.11".parse().expect("ip"), &[Role::Etcd]);
        let l = Layout::debian();
        kbz_testkit::assert_valid_sh([
            snapshot_script(&l, true, &h, "etcd-1"),
            restore_script(&l, true, &h, &[&h], "kbz-x", "/var/tmp/s.db"),
            drill_script("etcd-1", DRILL_CLIENT_PORT, DRILL_PEER_PORT),
            drill_cleanup_script("etcd-1"),
        ]);
        let r = restore_script(&l, true, &h, &[&h], "kbz-x", "/var/tmp/s.db");
        assert!(
            r.contains("--initial-cluster 'db1=https://10.0.0.11:2380'"),
            "{r}"
        );
        assert!(r.contains("chown -R etcd:etcd '/var/lib/etcd/kbz'"), "{r}");
        assert!(
            snapshot_script(&l, true, &h, "etcd-1").contains("--cert=/etc/etcd/kbz-tls/member.crt")
        );
        assert_eq!(l.service(&h, "stop"), "systemctl stop etcd");
    }
}
