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
