//! Real daemons on loopback: three Redis servers and three Sentinels started from the files
//! kbz renders (127.0.0.11-13 stand in for three hosts), bootstrapped by kbz's cluster step;
//! then the master is killed and a replica must be promoted, and kbz's re-run must follow the
//! new master instead of undoing the failover. Fails with the `apt-get install` line when
//! redis-server, redis-sentinel or redis-cli is missing (never a silent skip); CI installs them.

use kbz_core::component::HostExec;
use kbz_core::{Cmd, Config, Context, Executor, Host, Inventory, Role, Secret, Secrets};
use kbz_exec::LocalExecutor;
use kbz_redis::layout::{self, Layout};
use kbz_redis::observe::MasterSource;
use kbz_redis::{cluster, render, SECRET_REDIS, SECRET_SENTINEL};
use kbz_testkit::{free_port_on, Daemons};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemons and client the test runs, or a failure naming the package to install.
fn require_redis() {
    kbz_testkit::require_tool("redis-server", "redis-server");
    kbz_testkit::require_tool("redis-sentinel", "redis-sentinel");
    kbz_testkit::require_tool("redis-cli", "redis-tools");
}

/// The command line systemd would run, run in the foreground instead of under systemd.
fn spawn(argv: &[String]) -> Child {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            if a == "systemd" {
                "no".into()
            } else {
                a.clone()
            }
        })
        .collect();
    // Debian's units run the daemons with UMask=007; so does this.
    Command::new("sh")
        .arg("-c")
        .arg("umask 007; exec \"$@\"")
        .arg("sh")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon")
}

fn write(path: &str, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = Path::new(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

async fn sh(script: &str) -> String {
    let out = LocalExecutor::new()
        .run(&Cmd::new(script))
        .await
        .expect("run");
    out.stdout_str().trim().to_string()
}

fn cli(l: &Layout, h: &Host, port: u16, pass: &str, args: &str) -> String {
    format!(
        "REDISCLI_AUTH=\"$(cat '{}')\"; export REDISCLI_AUTH; timeout 10 redis-cli -h {} -p {port} {args} 2>&1",
        l.path(h, pass),
        h.ip
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_promotes_a_replica_and_kbz_follows_the_new_master() {
    require_redis();
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts: Vec<Host> = [
        ("db1", "127.0.0.11"),
        ("db2", "127.0.0.12"),
        ("db3", "127.0.0.13"),
    ]
    .iter()
    .map(|(n, ip)| Host::new(n, ip.parse().expect("ip"), &[Role::Redis]))
    .collect();
    let ips: Vec<IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let rp = free_port_on(&ips, &[]);
    let sp = free_port_on(&ips, &[rp]);
    let l = Layout::loopback(dir.path().to_path_buf(), rp, sp);

    let mut cfg = Config::default();
    cfg.cluster.name = "loopback".into();
    cfg.timeouts.readiness = 90;
    let mut secrets = Secrets::in_memory();
    // Passwords with every character a config parser or a shell could trip over.
    secrets.set(SECRET_REDIS, Secret::new("r3d'is \"pw\" $HOME \\ ;x"));
    secrets.set(SECRET_SENTINEL, Secret::new("sen`tinel` $(id) pw#1"));
    let inv = Inventory {
        path: "loopback.tsv".into(),
        hosts: hosts.clone(),
    };
    let ctx = Context::new(inv, cfg, secrets);

    let mut daemons = Daemons::new();
    for h in &hosts {
        for d in [
            layout::DATA_DIR,
            "/var/log/redis",
            "/run/redis",
            "/run/sentinel",
        ] {
            std::fs::create_dir_all(l.path(h, d)).expect("mkdir");
        }
        for f in render::files(&ctx, h, &l).expect("render") {
            if f.path.contains("/systemd/") {
                continue;
            }
            write(&f.path, &f.content, f.mode);
        }
        write(
            &l.path(h, layout::REDIS_MAIN),
            &render::redis_main_stub(&l, h).expect("stub"),
            0o640,
        );
        write(
            &l.path(h, layout::SENTINEL_MAIN),
            &render::sentinel_main_stub(&l, h).expect("stub"),
            0o640,
        );
        daemons.add(
            format!("{}-redis", h.hostname),
            spawn(&render::redis_exec_start(&l, h)),
        );
        daemons.add(
            format!("{}-sentinel", h.hostname),
            spawn(&render::sentinel_exec_start(&l, h)),
        );
    }
    let hx: Vec<HostExec> = hosts
        .iter()
        .map(|h| HostExec {
            host: h.clone(),
            exec: Arc::new(LocalExecutor::named(&h.hostname)),
        })
        .collect();

    // Bootstrap: db1 (first in the inventory) is the master, the others replicate.
    let first = cluster::converge(&ctx, &hx, &l).await.expect("bootstrap");
    assert_eq!(first.master, hosts[0].ip);
    assert_eq!(first.source, MasterSource::Bootstrap);
    assert_eq!(first.replicaof, ["db2", "db3"]);
    assert_eq!(first.monitored, ["db1", "db2", "db3"]);

    // A converged re-run only reads.
    let again = cluster::converge(&ctx, &hx, &l).await.expect("re-run");
    assert_eq!(again.master, hosts[0].ip);
    assert_eq!(again.source, MasterSource::Sentinels);
    assert!(again.replicaof.is_empty() && again.monitored.is_empty() && again.corrected.is_empty());
    let health = cluster::health(&ctx, &hx, &l).await;
    assert!(health.iter().all(|c| c.is_ok()), "{health:#?}");

    // Writes reach the replicas (min-replicas-to-write is satisfied).
    let set = sh(&cli(
        &l,
        &hosts[0],
        rp,
        layout::REDIS_PASS,
        "SET kbz:probe before-failover",
    ))
    .await;
    assert_eq!(set, "OK");
    let waited = sh(&cli(&l, &hosts[0], rp, layout::REDIS_PASS, "WAIT 2 5000")).await;
    assert_eq!(waited, "2");

    // Kill the master; a replica must be promoted by the Sentinels.
    let killed = Instant::now();
    daemons.kill("db1-redis");
    let deadline =
        Duration::from_millis(kbz_redis::DOWN_AFTER_MS + 2 * kbz_redis::FAILOVER_TIMEOUT_MS)
            + Duration::from_secs(15);
    let new_master = loop {
        let mut named = Vec::new();
        for h in &hosts {
            let a = sh(&cli(
                &l,
                h,
                sp,
                layout::SENTINEL_PASS,
                "SENTINEL GET-MASTER-ADDR-BY-NAME kbz",
            ))
            .await;
            named.push(a.lines().next().unwrap_or("").to_string());
        }
        if named.iter().all(|n| n == &named[0]) && named[0] != hosts[0].ip.to_string() {
            let ip: IpAddr = named[0].parse().expect("ip");
            let h = hosts.iter().find(|h| h.ip == ip).expect("inventory host");
            let role = sh(&cli(&l, h, rp, layout::REDIS_PASS, "ROLE")).await;
            if role.starts_with("master") {
                break ip;
            }
        }
        assert!(
            killed.elapsed() < deadline,
            "no replica promoted within {deadline:?}; sentinels name {named:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let promoted_after = killed.elapsed();
    assert!(new_master != hosts[0].ip);
    assert!(
        promoted_after < deadline,
        "promotion took {promoted_after:?}"
    );
    eprintln!(
        "loopback failover: {new_master} promoted {promoted_after:?} after the master was killed"
    );
    let promoted = hosts.iter().find(|h| h.ip == new_master).expect("host");
    let value = sh(&cli(&l, promoted, rp, layout::REDIS_PASS, "GET kbz:probe")).await;
    assert_eq!(value, "before-failover", "an acknowledged write was lost");

    // The old master comes back (systemd's Restart=always) as a stand-alone master. kbz's
    // re-run follows the Sentinels' master: it never tells the promoted node to replicate.
    daemons.add("db1-redis", spawn(&render::redis_exec_start(&l, &hosts[0])));
    let after = cluster::converge(&ctx, &hx, &l)
        .await
        .expect("re-run after failover");
    eprintln!("re-run after failover: {after:?}");
    assert_eq!(after.master, new_master);
    assert_eq!(after.source, MasterSource::Sentinels);
    assert!(after.replicaof.iter().all(|h| h == "db1"), "{after:?}");
    assert!(
        after.monitored.is_empty() && after.corrected.is_empty(),
        "{after:?}"
    );
    let role = sh(&cli(
        &l,
        &hosts[0],
        rp,
        layout::REDIS_PASS,
        "INFO replication",
    ))
    .await;
    assert!(role.contains("role:slave"), "{role}");
    assert!(
        role.contains(&format!("master_host:{new_master}")),
        "{role}"
    );
    let health = cluster::health(&ctx, &hx, &l).await;
    assert!(health.iter().all(|c| c.is_ok()), "{health:#?}");

    // And once more: nothing to do, and the files kbz owns are exactly what it renders
    // (everything the daemons rewrote lives in their own main files).
    let settled = cluster::converge(&ctx, &hx, &l).await.expect("settled");
    assert!(
        settled.replicaof.is_empty()
            && settled.monitored.is_empty()
            && settled.corrected.is_empty(),
        "{settled:?}"
    );
    for h in &hosts {
        for f in render::files(&ctx, h, &l).expect("render") {
            if f.path.contains("/systemd/") {
                continue;
            }
            assert_eq!(
                std::fs::read_to_string(&f.path).expect("read"),
                f.content,
                "{}",
                f.path
            );
        }
        let main = std::fs::read_to_string(l.path(h, layout::REDIS_MAIN)).expect("main");
        assert!(main.starts_with(render::REDIS_MAIN_MARKER), "{main}");
        if h.ip != new_master {
            assert!(
                main.contains(&format!("replicaof {new_master} {rp}")),
                "{}: {main}",
                h.hostname
            );
        }
        let smain = std::fs::read_to_string(l.path(h, layout::SENTINEL_MAIN)).expect("main");
        assert!(smain.starts_with(render::SENTINEL_MAIN_MARKER), "{smain}");
        assert!(
            smain.contains(&format!("sentinel monitor kbz {new_master} {rp} 2")),
            "{}: {smain}",
            h.hostname
        );
    }
}

/// Every daemon of the backup test, started and stopped through `ROOT/<host>/ctl-<unit>`
/// scripts (what [`kbz_redis::backup::RedisBackup`] runs in place of systemctl); dropping
/// it kills each by its pid file however the test ends.
struct Controlled {
    pids: Vec<String>,
}

impl Drop for Controlled {
    fn drop(&mut self) {
        for p in &self.pids {
            if let Ok(pid) = std::fs::read_to_string(p) {
                let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
            }
        }
    }
}

fn ctl_script(argv: &[String], pidfile: &str) -> String {
    let cmd = argv
        .iter()
        .map(|a| {
            if a == "systemd" {
                "no".to_string()
            } else {
                a.clone()
            }
        })
        .map(|a| kbz_core::shell::quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let p = kbz_core::shell::quote(pidfile);
    format!(
        "case \"$1\" in\nstart) (umask 007; setsid {cmd} </dev/null >>{p}.err 2>&1 & echo $! >{p}) ;;\nstop) pid=$(cat {p}); kill \"$pid\"; while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done ;;\nesac\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rdb_backup_restores_onto_the_master_replicas_resync_and_a_drill_matches() {
    use kbz_core::backup::{self, Backup, BackupEnv, BackupRequest, Repository, Target};
    use kbz_redis::backup::{RedisBackup, CANARY_KEY};
    require_redis();
    kbz_testkit::require_tool("redis-check-rdb", "redis-tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts: Vec<Host> = [
        ("rb1", "127.0.0.21"),
        ("rb2", "127.0.0.22"),
        ("rb3", "127.0.0.23"),
    ]
    .iter()
    .map(|(n, ip)| Host::new(n, ip.parse().expect("ip"), &[Role::Redis]))
    .collect();
    let ips: Vec<IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let rp = free_port_on(&ips, &[]);
    let sp = free_port_on(&ips, &[rp]);
    let l = Layout::loopback(dir.path().to_path_buf(), rp, sp);
    let mut cfg = Config::default();
    cfg.cluster.name = "loopback".into();
    cfg.timeouts.readiness = 90;
    let mut secrets = Secrets::in_memory();
    // Alphanumeric, as kbz generates them: Sentinel writes auth-pass and sentinel-pass
    // unquoted when it rewrites its file, so a password with a space or quote would stop it
    // from starting again after the restore restarts it.
    secrets.set(SECRET_REDIS, Secret::new("BackupPw1x2y"));
    secrets.set(SECRET_SENTINEL, Secret::new("SentinelPw1x"));
    let backup_host = Host::new("bk", "127.0.0.1".parse().expect("ip"), &[Role::Backup]);
    let mut all = hosts.clone();
    all.push(backup_host.clone());
    let ctx = Context::new(
        Inventory {
            path: "loopback.tsv".into(),
            hosts: all,
        },
        cfg,
        secrets,
    );
    let mut guard = Controlled { pids: Vec::new() };
    for h in &hosts {
        for d in [
            layout::DATA_DIR,
            "/var/log/redis",
            "/run/redis",
            "/run/sentinel",
            "/var/tmp",
        ] {
            std::fs::create_dir_all(l.path(h, d)).expect("mkdir");
        }
        for f in render::files(&ctx, h, &l).expect("render") {
            if !f.path.contains("/systemd/") {
                write(&f.path, &f.content, f.mode);
            }
        }
        write(
            &l.path(h, layout::REDIS_MAIN),
            &render::redis_main_stub(&l, h).expect("stub"),
            0o640,
        );
        write(
            &l.path(h, layout::SENTINEL_MAIN),
            &render::sentinel_main_stub(&l, h).expect("stub"),
            0o640,
        );
        let root = dir.path().join(&h.hostname);
        for (unit, argv) in [
            ("redis-server", render::redis_exec_start(&l, h)),
            ("redis-sentinel", render::sentinel_exec_start(&l, h)),
        ] {
            let pid = root.join(format!("{unit}.ctl.pid")).display().to_string();
            let ctl = root.join(format!("ctl-{unit}"));
            std::fs::write(&ctl, ctl_script(&argv, &pid)).expect("ctl");
            guard.pids.push(pid);
            let out = sh(&format!("sh '{}' start", ctl.display())).await;
            assert!(out.is_empty(), "{out}");
        }
    }
    let hx: Vec<HostExec> = hosts
        .iter()
        .map(|h| HostExec {
            host: h.clone(),
            exec: Arc::new(LocalExecutor::named(&h.hostname)),
        })
        .collect();
    cluster::converge(&ctx, &hx, &l).await.expect("bootstrap");
    for i in 1..=5 {
        let set = sh(&cli(
            &l,
            &hosts[0],
            rp,
            layout::REDIS_PASS,
            &format!("SET app:k{i} v{i}"),
        ))
        .await;
        assert_eq!(set, "OK");
    }
    let set = sh(&cli(
        &l,
        &hosts[0],
        rp,
        layout::REDIS_PASS,
        "SET app:ttl t EX 3600",
    ))
    .await;
    assert_eq!(set, "OK");

    let bk = HostExec {
        host: backup_host.clone(),
        exec: Arc::new(LocalExecutor::named("bk")),
    };
    let repo = Repository::new(
        bk.exec.clone(),
        &dir.path().join("repo").display().to_string(),
    );
    let env = BackupEnv {
        ctx: &ctx,
        hosts: &hx,
        backup_host: &bk,
        repo: &repo,
    };
    let redis = RedisBackup { layout: l.clone() };
    let started = chrono::Utc::now();
    let req = BackupRequest {
        id: backup::manifest::new_id("redis", started),
        kind: None,
    };
    let taken = redis.backup(&env, &req).await.expect("backup");
    assert_eq!(taken.source_host, "rb1");
    assert_eq!(taken.contents["key_count"], 7, "{:?}", taken.contents);
    assert_eq!(taken.contents["persistent_keys"], 6, "{:?}", taken.contents);
    assert!(
        taken.tool_version.starts_with("Redis server v="),
        "{}",
        taken.tool_version
    );
    let key = Secret::generate(32);
    let (m, sealed) = backup::seal("redis", &req, &taken, started, Some(&key)).expect("seal");
    repo.store(&m, sealed.as_deref()).await.expect("store");
    let (listed, _) = repo.list().await.expect("list");
    let m = backup::manifest::select(&listed, "redis", &Target::Latest)
        .expect("latest")
        .clone();

    // Changes after the backup, which the restore undoes on every node.
    for cmd in ["DEL app:k1", "SET app:k9 late"] {
        sh(&cli(&l, &hosts[0], rp, layout::REDIS_PASS, cmd)).await;
    }
    let plan = redis.restore_plan(&env, &m, None).await.expect("plan");
    assert!(plan.running);
    assert_eq!(plan.stops.len(), 4, "{:?}", plan.stops);
    let plain =
        backup::unseal(&m, repo.fetch(&m).await.expect("fetch"), Some(&key)).expect("unseal");
    let restored = match redis.restore(&env, &m, Some(&plain), None).await {
        Ok(r) => r,
        Err(e) => {
            let logs: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let log = dir
                        .path()
                        .join(&h.hostname)
                        .join("redis-sentinel.ctl.pid.err");
                    let t = std::fs::read_to_string(log).unwrap_or_default();
                    t.lines().rev().take(6).collect::<Vec<_>>().join("\n")
                })
                .collect();
            panic!(
                "restore: {e}\nsentinel logs (last lines first):\n{}",
                logs.join("\n--\n")
            );
        }
    };
    assert_eq!(
        restored.contents["persistent_keys"], 6,
        "{}",
        restored.detail
    );
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let k1 = sh(&cli(&l, h, rp, layout::REDIS_PASS, "GET app:k1")).await;
            let k9 = sh(&cli(&l, h, rp, layout::REDIS_PASS, "EXISTS app:k9")).await;
            if k1 == "v1" && k9 == "0" {
                break;
            }
            assert!(Instant::now() < deadline, "{}: k1={k1} k9={k9}", h.hostname);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let canary = sh(&cli(
            &l,
            h,
            rp,
            layout::REDIS_PASS,
            &format!("GET {CANARY_KEY}"),
        ))
        .await;
        assert_eq!(canary, m.id);
    }
    let health = cluster::health(&ctx, &hx, &l).await;
    assert!(health.iter().all(|c| c.is_ok()), "{health:#?}");

    let drilled = redis.drill(&env, &m, Some(&plain)).await.expect("drill");
    backup::judge("redis", &m, &drilled).expect("the drill matches");
    assert_eq!(drilled.compared.len(), 2);
    assert!(!Path::new(&format!("/var/tmp/kbz-drill-redis-{}", m.id)).exists());
}
