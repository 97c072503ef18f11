//! Redis's backups ([`kbz_core::backup::Backup`]): a canary key, then `BGSAVE` on the
//! master, waited for (`rdb_saves` in `INFO persistence`, and `rdb_last_bgsave_status:ok`),
//! the RDB copied aside and counted by `redis-check-rdb` (keys, and keys without an expiry:
//! the figure a later load must reproduce exactly). A restore stops every Sentinel (so none
//! fails over while the master is down), stops the master, puts the RDB in place both as
//! `dump.rdb` and as the base of a fresh multi-part AOF (kbz runs Redis with `appendonly
//! yes`, which would otherwise start empty), starts it, waits until every replica streams
//! from it again (a full resync) and every Sentinel, started again, names it. A drill loads
//! the RDB into a scratch redis-server on the backup host that listens on a unix socket only
//! (mode 0700 in a 0700 directory, no TCP port), compares, and shuts it down.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbz_core::backup::{
    compare, Artifact, Backup, BackupEnv, BackupError, BackupKind, BackupRequest, Contents,
    Drilled, Manifest, RestorePlan, Restored, Taken,
};
use kbz_core::component::HostExec;
use kbz_core::shell::quote;
use kbz_core::{Cmd, Host, Output, Role};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::layout::{self, Layout};
use crate::{scripts, REDIS_SERVICE, SENTINEL_SERVICE};

/// The key written before each BGSAVE (its value is the backup's id).
pub const CANARY_KEY: &str = "kbz:backup-canary";

const COMPONENT: &str = "redis";

/// Redis's [`Backup`], over a [`Layout`] (Debian's on real hosts).
#[derive(Debug, Clone)]
pub struct RedisBackup {
    /// Paths and ports.
    pub layout: Layout,
}

impl Default for RedisBackup {
    fn default() -> Self {
        RedisBackup {
            layout: Layout::debian(),
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", out.stdout_str(), out.stderr_str())
        .trim()
        .to_string()
}

fn section(out: &str, name: &str) -> String {
    let mut lines = out.lines().skip_while(|l| *l != format!("@@ {name}"));
    lines.next();
    lines
        .take_while(|l| !l.starts_with("@@ "))
        .collect::<Vec<_>>()
        .join("\n")
}

impl RedisBackup {
    fn auth(&self, host: &Host) -> String {
        format!(
            "REDISCLI_AUTH=\"$(cat {})\"; export REDISCLI_AUTH\n",
            quote(&self.layout.path(host, layout::REDIS_PASS))
        )
    }

    fn cli(&self, host: &Host) -> String {
        format!(
            "timeout 30 redis-cli -e -h {} -p {}",
            quote(&self.layout.local_addr(host)),
            self.layout.redis_port
        )
    }

    /// A staging file on `host`.
    fn tmp(&self, host: &Host, name: &str) -> String {
        self.layout.path(host, &format!("/var/tmp/{name}"))
    }

    /// The command that stops or starts `unit` on `host`: systemctl on real hosts, the
    /// loopback test's `ROOT/<host>/ctl-<unit>` script (none: nothing to do) otherwise.
    /// A start is tried three times ([`kbz_core::shell::retried_start`]).
    pub fn service(&self, host: &Host, unit: &str, action: &str) -> String {
        match &self.layout.root {
            None if action == "start" => {
                kbz_core::shell::retried_start(&format!("systemctl start {unit}"))
            }
            None => format!("systemctl {action} {unit}"),
            Some(r) => {
                let f = quote(&format!("{}/{}/ctl-{unit}", r.display(), host.hostname));
                format!("if [ -f {f} ]; then sh {f} {action}; fi")
            }
        }
    }

    /// The script that takes the backup on the master: canary, BGSAVE, wait, copy, count.
    pub fn backup_script(&self, host: &Host, id: &str) -> String {
        let staged = self.tmp(host, &format!("kbz-backup-redis-{id}.rdb"));
        format!(
            "set -e\numask 077\n{auth}r() {{ {cli} \"$@\"; }}\nr SET {CANARY_KEY} {id} >/dev/null\n\
             saves() {{ r INFO persistence | tr -d '\\r' | sed -n 's/^rdb_saves://p'; }}\n\
             before=$(saves)\n\
             out=$(r BGSAVE SCHEDULE 2>&1) || {{ echo \"BGSAVE: $out\"; exit 1; }}\n\
             i=0\nwhile :; do\n  info=$(r INFO persistence | tr -d '\\r')\n  now=$(printf '%s\\n' \"$info\" | sed -n 's/^rdb_saves://p')\n  if [ \"$now\" != \"$before\" ] && printf '%s\\n' \"$info\" | grep -qx 'rdb_bgsave_in_progress:0'; then break; fi\n  i=$((i+1)); if [ $i -ge 1200 ]; then echo 'BGSAVE did not finish in 600 s'; exit 1; fi\n  sleep 0.5\ndone\n\
             printf '%s\\n' \"$info\" | grep -qx 'rdb_last_bgsave_status:ok' || {{ echo \"BGSAVE failed: $(printf '%s\\n' \"$info\" | grep '^rdb_last_bgsave_status')\"; exit 1; }}\n\
             dir=$(r CONFIG GET dir | sed -n 2p)\nfile=$(r CONFIG GET dbfilename | sed -n 2p)\n\
             cp \"$dir/$file\" {s}\n\
             echo '@@ check'\nredis-check-rdb {s} 2>&1 | grep '^\\[info\\]' || true\n\
             echo '@@ version'\nredis-server --version | head -n 1\n",
            auth = self.auth(host),
            cli = self.cli(host),
            id = quote(id),
            s = quote(&staged),
        )
    }

    /// Restores the RDB at `staged` on the stopped master `host` (data directory `dir`).
    pub fn place_script(&self, host: &Host, dir: &str, staged: &str) -> String {
        let chown = match self.layout.root {
            None => format!(
                "chown -R redis:redis {d}/dump.rdb {d}/appendonlydir\n",
                d = quote(dir)
            ),
            Some(_) => String::new(),
        };
        format!(
            "set -e\nd={d}\nrm -rf \"$d/dump.rdb.kbz-before-restore\" \"$d/appendonlydir.kbz-before-restore\"\n\
             if [ -e \"$d/dump.rdb\" ]; then mv \"$d/dump.rdb\" \"$d/dump.rdb.kbz-before-restore\"; fi\n\
             if [ -e \"$d/appendonlydir\" ]; then mv \"$d/appendonlydir\" \"$d/appendonlydir.kbz-before-restore\"; fi\n\
             cp {s} \"$d/dump.rdb\"\nmkdir -m 0750 \"$d/appendonlydir\"\ncp {s} \"$d/appendonlydir/appendonly.aof.1.base.rdb\"\n\
             printf 'file appendonly.aof.1.base.rdb seq 1 type b\\n' >\"$d/appendonlydir/appendonly.aof.manifest\"\n{chown}rm -f {s}\n",
            d = quote(dir),
            s = quote(staged),
        )
        .replace("{host}", &host.hostname)
    }

    /// Waits (up to 120 s) until the local Redis answers PONG, then prints DBSIZE, the
    /// keys without an expiry and the canary in `@@` sections.
    pub fn contents_script(&self, host: &Host) -> String {
        format!(
            "{auth}r() {{ {cli} \"$@\"; }}\ni=0\nuntil [ \"$(r PING 2>/dev/null)\" = PONG ]; do i=$((i+1)); if [ $i -ge 240 ]; then echo \"redis does not answer: $(r PING 2>&1)\"; exit 1; fi; sleep 0.5; done\n{tail}",
            auth = self.auth(host),
            cli = self.cli(host),
            tail = contents_tail("r"),
        )
    }
}

/// The shared end of the contents scripts: counts and canary through the client `$r`.
fn contents_tail(r: &str) -> String {
    format!(
        "echo '@@ dbsize'\n{r} DBSIZE\necho '@@ persistent'\n{r} INFO keyspace | tr -d '\\r' | awk -F'[:=,]' '/^db[0-9]+:/ {{ n += $3 - $5 }} END {{ print n + 0 }}'\necho '@@ canary'\n{r} GET {CANARY_KEY}\necho '@@ end'\n"
    )
}

/// What a backup script printed: key counts (from redis-check-rdb) and the version.
pub fn parse_backup(out: &str) -> Result<(Contents, String), String> {
    let check = section(out, "check");
    let num = |label: &str| -> Option<u64> {
        check
            .lines()
            .find(|l| l.ends_with(label))
            .and_then(|l| l.trim_start_matches("[info] ").split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let keys =
        num(" keys read").ok_or_else(|| format!("redis-check-rdb counted no keys: {check}"))?;
    let expires = num(" expires").unwrap_or(0);
    let mut c = Contents::new();
    c.insert("key_count".into(), serde_json::json!(keys));
    c.insert(
        "persistent_keys".into(),
        serde_json::json!(keys.saturating_sub(expires)),
    );
    Ok((c, section(out, "version").trim().to_string()))
}

/// What a contents script printed.
pub fn parse_contents(out: &str) -> Contents {
    let mut c = Contents::new();
    let n = |s: String| s.trim().parse::<u64>().ok().map(|n| serde_json::json!(n));
    if let Some(v) = n(section(out, "dbsize")) {
        c.insert("key_count".into(), v);
    }
    if let Some(v) = n(section(out, "persistent")) {
        c.insert("persistent_keys".into(), v);
    }
    c.insert(
        "canary".into(),
        serde_json::json!(section(out, "canary").trim()),
    );
    c
}

/// The scratch directory of a drill on the backup host.
fn drill_dir(id: &str) -> String {
    format!("/var/tmp/kbz-drill-redis-{id}")
}

/// Starts the scratch redis-server on the unix socket of `DIR` from `DIR/dump.rdb`, waits
/// until it has loaded, prints its contents.
pub fn drill_script(id: &str) -> String {
    let d = drill_dir(id);
    format!(
        "set -e\nd={d}\ncommand -v redis-server >/dev/null || {{ echo 'redis-server is not installed on the backup host: apt-get install redis-server (and keep its service disabled), or give the backup role to a Redis host'; exit 1; }}\n\
         redis-server --port 0 --unixsocket \"$d/redis.sock\" --unixsocketperm 700 --dir \"$d\" --dbfilename dump.rdb --appendonly no --save '' --daemonize yes --pidfile \"$d/redis.pid\" --logfile \"$d/redis.log\"\n\
         r() {{ timeout 30 redis-cli -e -s \"$d/redis.sock\" \"$@\"; }}\n\
         i=0\nuntil [ \"$(r PING 2>/dev/null)\" = PONG ]; do i=$((i+1)); if [ $i -ge 240 ]; then echo 'the scratch redis-server did not load in 120 s:'; tail -n 20 \"$d/redis.log\"; exit 1; fi; sleep 0.5; done\n{tail}",
        d = quote(&d),
        tail = contents_tail("r"),
    )
}

/// Stops the scratch redis-server (by its pid) and removes the drill's directory.
pub fn drill_cleanup_script(id: &str) -> String {
    format!(
        "d={d}\nif [ -f \"$d/redis.pid\" ]; then p=$(cat \"$d/redis.pid\"); kill \"$p\" 2>/dev/null || true; i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -9 \"$p\" 2>/dev/null || true; fi\nrm -rf \"$d\"\n",
        d = quote(&drill_dir(id))
    )
}

impl RedisBackup {
    async fn run(&self, hx: &HostExec, script: String, secs: u64) -> Result<Output, BackupError> {
        Ok(hx
            .exec
            .run(&Cmd::new(script).timeout(Duration::from_secs(secs)))
            .await?)
    }

    /// The node that reports `role:master` (the first, in inventory order).
    async fn master<'a>(&self, hosts: &'a [HostExec]) -> Option<&'a HostExec> {
        for hx in hosts {
            let s = format!(
                "{}{} INFO replication | tr -d '\\r' | grep -qx role:master",
                self.auth(&hx.host),
                self.cli(&hx.host)
            );
            if let Ok(out) = self.run(hx, s, 20).await {
                if out.success() {
                    return Some(hx);
                }
            }
        }
        None
    }

    /// Every replica streams from `master`: `scripts::wait_replication`, polled.
    async fn wait_script(
        &self,
        runner: &HostExec,
        script: String,
        what: &str,
        secs: u64,
    ) -> Result<(), BackupError> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.run(runner, script.clone(), 30).await?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackupError::restore(
                    COMPONENT,
                    &runner.host.hostname,
                    format!("{what} after {secs} s: {}", text(&out)),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[async_trait]
impl Backup for RedisBackup {
    fn component(&self) -> &'static str {
        COMPONENT
    }

    fn applies_to(&self, host: &Host) -> bool {
        host.has(Role::Redis)
    }

    async fn backup(&self, env: &BackupEnv<'_>, req: &BackupRequest) -> Result<Taken, BackupError> {
        let Some(hx) = self.master(env.hosts).await else {
            return Err(BackupError::failed(
                COMPONENT,
                "any node",
                "no Redis node reports role:master; see `kbz-health --component redis`",
            ));
        };
        let host = hx.host.hostname.clone();
        let staged = self.tmp(&hx.host, &format!("kbz-backup-redis-{}.rdb", req.id));
        let out = self
            .run(hx, self.backup_script(&hx.host, &req.id), 900)
            .await;
        let cleanup = format!("rm -f {}", quote(&staged));
        let out = match out {
            Ok(o) if o.success() => o,
            Ok(o) => {
                let _ = self.run(hx, cleanup, 30).await;
                return Err(BackupError::failed(COMPONENT, &host, text(&o)));
            }
            Err(e) => {
                let _ = self.run(hx, cleanup, 30).await;
                return Err(e);
            }
        };
        let time = Utc::now();
        let parsed = parse_backup(&out.stdout_str());
        let bytes = hx.exec.read_file(&staged).await;
        let _ = self.run(hx, cleanup, 30).await;
        let (mut contents, version) =
            parsed.map_err(|e| BackupError::failed(COMPONENT, &host, e))?;
        contents.insert("canary".into(), serde_json::json!(req.id));
        let bytes = bytes?
            .ok_or_else(|| BackupError::failed(COMPONENT, &host, format!("{staged} vanished")))?;
        Ok(Taken {
            kind: BackupKind::Full,
            source_host: host,
            time,
            tool_version: version,
            contents,
            artifact: Some(Artifact {
                file: "dump.rdb".into(),
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
        let master = self.master(env.hosts).await;
        let mut running = master.is_some();
        for hx in env.hosts {
            let ping = format!(
                "{}[ \"$({} PING)\" = PONG ]",
                self.auth(&hx.host),
                self.cli(&hx.host)
            );
            running &= self
                .run(hx, ping, 20)
                .await
                .map(|o| o.success())
                .unwrap_or(false);
        }
        let master_name = master.map(|h| h.host.hostname.clone()).unwrap_or_else(|| {
            env.hosts
                .first()
                .map(|h| h.host.hostname.clone())
                .unwrap_or_default()
        });
        let mut stops: Vec<(String, String)> = env
            .hosts
            .iter()
            .map(|h| (h.host.hostname.clone(), SENTINEL_SERVICE.to_string()))
            .collect();
        stops.push((master_name.clone(), REDIS_SERVICE.to_string()));
        let mut steps = vec![format!(
            "{}: read {} ({}) from the repository, check its sha256 and decrypt it",
            env.repo.host(),
            m.id,
            kbz_core::backup::repo::human(m.size_bytes)
        )];
        for hx in env.hosts {
            steps.push(format!(
                "{}: stop {SENTINEL_SERVICE} (no failover while the master is down)",
                hx.host.hostname
            ));
        }
        steps.push(format!(
            "{master_name}: write the RDB to /var/tmp, stop {REDIS_SERVICE}"
        ));
        steps.push(format!(
            "{master_name}: keep dump.rdb and appendonlydir as *.kbz-before-restore, put the RDB in place as dump.rdb and as the base of a new appendonlydir"
        ));
        steps.push(format!(
            "{master_name}: start {REDIS_SERVICE}, check {} keys and the canary {CANARY_KEY}",
            m.contents.get("key_count").cloned().unwrap_or_default()
        ));
        steps.push("wait until every replica streams from the master again (full resync)".into());
        for hx in env.hosts {
            steps.push(format!("{}: start {SENTINEL_SERVICE}", hx.host.hostname));
        }
        steps.push(format!(
            "wait until every Sentinel names {master_name} as master and CKQUORUM passes"
        ));
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
        let Some(bytes) = artifact else {
            return Err(BackupError::restore(
                COMPONENT,
                env.repo.host(),
                "no RDB bytes to restore",
            ));
        };
        let Some(master) = self.master(env.hosts).await else {
            return Err(BackupError::restore(
                COMPONENT,
                "any node",
                "no Redis node reports role:master, so there is no master to restore onto",
            ));
        };
        let mh = &master.host;
        let fail = |host: &str, what: &str, out: &Output| {
            BackupError::restore(COMPONENT, host, format!("{what}: {}", text(out)))
        };
        let dir_out = self
            .run(
                master,
                format!(
                    "{}{} CONFIG GET dir | sed -n 2p",
                    self.auth(mh),
                    self.cli(mh)
                ),
                20,
            )
            .await?;
        let dir = dir_out.stdout_str().trim().to_string();
        if !dir_out.success() || !dir.starts_with('/') {
            return Err(fail(&mh.hostname, "CONFIG GET dir", &dir_out));
        }
        let staged = self.tmp(mh, &format!("kbz-restore-redis-{}.rdb", m.id));
        master
            .exec
            .put_file(&staged, bytes, 0o600, "root:root")
            .await
            .map_err(|e| BackupError::restore(COMPONENT, &mh.hostname, e.to_string()))?;
        for hx in env.hosts {
            let out = self
                .run(hx, self.service(&hx.host, SENTINEL_SERVICE, "stop"), 60)
                .await?;
            if !out.success() {
                return Err(fail(&hx.host.hostname, "stop redis-sentinel", &out));
            }
        }
        let steps = [
            (self.service(mh, REDIS_SERVICE, "stop"), "stop redis-server"),
            (self.place_script(mh, &dir, &staged), "put the RDB in place"),
            (
                self.service(mh, REDIS_SERVICE, "start"),
                "start redis-server",
            ),
        ];
        for (script, what) in steps {
            let out = self.run(master, script, 120).await?;
            if !out.success() {
                return Err(fail(&mh.hostname, what, &out));
            }
        }
        let out = self.run(master, self.contents_script(mh), 180).await?;
        if !out.success() {
            return Err(fail(&mh.hostname, "the restored master", &out));
        }
        let live = parse_contents(&out.stdout_str());
        let replicas: Vec<IpAddr> = env
            .hosts
            .iter()
            .filter(|h| h.host.hostname != mh.hostname)
            .map(|h| h.host.ip)
            .collect();
        let secs = env.ctx.config.timeouts.readiness;
        if !replicas.is_empty() {
            self.wait_script(
                master,
                scripts::wait_replication(&self.layout, mh, mh.ip, &replicas),
                "the replicas do not stream from the restored master",
                secs,
            )
            .await?;
        }
        for hx in env.hosts {
            let out = self
                .run(hx, self.service(&hx.host, SENTINEL_SERVICE, "start"), 60)
                .await?;
            if !out.success() {
                return Err(fail(&hx.host.hostname, "start redis-sentinel", &out));
            }
        }
        let sentinels: Vec<IpAddr> = env.hosts.iter().map(|h| h.host.ip).collect();
        self.wait_script(
            master,
            scripts::wait_sentinels(&self.layout, mh, mh.ip, &sentinels),
            "the Sentinels do not agree on the restored master",
            secs,
        )
        .await?;
        let expected = m.contents.get("canary").cloned().unwrap_or_default();
        if live.get("canary") != Some(&expected) {
            return Err(BackupError::restore(
                COMPONENT,
                &mh.hostname,
                format!(
                    "the restored master's canary {CANARY_KEY} is {}, the backup recorded {expected}",
                    live.get("canary").cloned().unwrap_or_default()
                ),
            ));
        }
        Ok(Restored {
            detail: format!(
                "master {} with {} keys, {} replica(s) in sync, canary {CANARY_KEY} = {expected}",
                mh.hostname,
                live.get("key_count").cloned().unwrap_or_default(),
                replicas.len()
            ),
            contents: live,
        })
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
                "no RDB bytes to drill with",
            ));
        };
        let started = Instant::now();
        let dir = drill_dir(&m.id);
        let cleanup = drill_cleanup_script(&m.id);
        let _ = self.run(bh, cleanup.clone(), 30).await;
        let result = async {
            let mk = self
                .run(bh, format!("mkdir -p -m 0700 {}", quote(&dir)), 30)
                .await?;
            if !mk.success() {
                return Err(BackupError::drill(COMPONENT, &host, text(&mk)));
            }
            bh.exec
                .put_file(&format!("{dir}/dump.rdb"), bytes, 0o600, "root:root")
                .await?;
            let out = self.run(bh, drill_script(&m.id), 180).await?;
            if !out.success() {
                return Err(BackupError::drill(
                    COMPONENT,
                    &host,
                    format!("scratch redis-server: {}", text(&out)),
                ));
            }
            Ok(parse_contents(&out.stdout_str()))
        }
        .await;
        let restore_ms = started.elapsed().as_millis() as u64;
        let _ = self.run(bh, cleanup, 30).await;
        let got = result?;
        Ok(Drilled {
            host,
            restore_ms,
            compared: compare(&m.contents, &got, &["persistent_keys", "canary"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        let out = "@@ check\n[info] 7 keys read\n[info] 2 expires\n[info] 0 already expired\n@@ version\nRedis server v=7.0.15 sha=0\n";
        let (c, v) = parse_backup(out).expect("parse");
        assert_eq!(
            (c["key_count"].clone(), c["persistent_keys"].clone()),
            (serde_json::json!(7), serde_json::json!(5))
        );
        assert!(v.starts_with("Redis server v=7.0.15"));
        assert!(parse_backup("@@ check\n@@ version\n").is_err());
        let c = parse_contents("@@ dbsize\n7\n@@ persistent\n5\n@@ canary\nredis-1\n@@ end\n");
        assert_eq!(c["persistent_keys"], 5);
        assert_eq!(c["canary"], "redis-1");
    }

    #[test]
    fn scripts_are_valid_sh() {
        let h = Host::new("r1", "10.0.0.21".parse().expect("ip"), &[Role::Redis]);
        let b = RedisBackup::default();
        kbz_testkit::assert_valid_sh([
            b.backup_script(&h, "redis-1"),
            b.place_script(&h, "/var/lib/redis", "/var/tmp/x.rdb"),
            b.contents_script(&h),
            drill_script("redis-1"),
            drill_cleanup_script("redis-1"),
        ]);
        assert!(!b.backup_script(&h, "redis-1").contains("PLACEHOLDER"));
        assert_eq!(
            b.service(&h, "redis-server", "stop"),
            "systemctl stop redis-server"
        );
    }
}
