//! A real etcd on loopback, started with the environment file kbz renders with
//! `[security] tls = true` (only the paths of the TLS files, the data directory and the ports
//! are moved into a temporary directory): kbz's own `etcdctl` call with the member
//! certificate is answered, a client without a certificate or over plain HTTP is refused.

use kbz_core::inventory::{Host, Inventory, Role};
use kbz_core::{Config, Context, Secrets};
use kbz_etcd::{Etcd, TLS_CA, TLS_CERT, TLS_KEY};
use kbz_testkit::{free_port, Daemons};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(script: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn etcd_started_with_the_rendered_tls_settings_requires_a_client_certificate() {
    let etcd = kbz_testkit::require_tool("etcd", "etcd-server");
    kbz_testkit::require_tool("etcdctl", "etcd-client");
    let inv = Inventory {
        path: "servers.tsv".into(),
        hosts: vec![Host::new(
            "lo1",
            "127.0.0.1".parse().expect("ip"),
            &[Role::Etcd, Role::Postgres],
        )],
    };
    let mut cfg = Config::default();
    cfg.cluster.name = "tls-loopback".into();
    let ctx = kbz_testkit::with_tls(&Context::new(inv, cfg, Secrets::in_memory()));
    let host = ctx.inventory.host("lo1").expect("lo1").clone();
    let pki = ctx.pki.as_ref().expect("pki");

    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (client, peer) = (free_port(), free_port());
    let moved = |s: &str| {
        s.replace(TLS_CA, &d.join("ca.crt").display().to_string())
            .replace(TLS_CERT, &d.join("member.crt").display().to_string())
            .replace(TLS_KEY, &d.join("member.key").display().to_string())
            .replace(":2379", &format!(":{client}"))
            .replace(":2380", &format!(":{peer}"))
    };
    let member = pki.member("lo1").expect("member");
    let write = |name: &str, data: &str| std::fs::write(d.join(name), data).expect(name);
    write("ca.crt", pki.ca_pem());
    write("member.crt", &member.cert_pem);
    write("member.key", member.key.expose());

    let env_file = Etcd::env_file(&ctx, &host).expect("env file");
    let mut cmd = Command::new(etcd);
    for line in env_file.lines().filter(|l| l.starts_with("ETCD_")) {
        let (k, v) = line.split_once('=').expect("KEY=value");
        let v = moved(v.trim_matches('"'));
        let v = if k == "ETCD_DATA_DIR" {
            d.join("data").display().to_string()
        } else {
            v
        };
        cmd.env(k, v);
    }
    assert!(
        env_file.contains("ETCD_CLIENT_CERT_AUTH=\"true\""),
        "{env_file}"
    );
    assert!(
        env_file.contains("ETCD_PEER_CLIENT_CERT_AUTH=\"true\""),
        "{env_file}"
    );
    let log = std::fs::File::create(d.join("etcd.log")).expect("log");
    // Killed (by its pid) when the test ends, however it ends.
    let mut daemons = Daemons::new();
    daemons.add(
        "etcd",
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd"),
    );

    // kbz's own health call (install's cluster step, kbz-health's probe), paths moved.
    let health = moved(&Etcd::health_script(&ctx));
    assert!(health.contains("--cert="), "{health}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = sh(&health);
        if ok && text.contains("is healthy") {
            break;
        }
        let log = std::fs::read_to_string(d.join("etcd.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "etcd with TLS never answered kbz's etcdctl:\n{text}\n--- etcd log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let put = moved(&Etcd::etcdctl(&ctx, "put /kbz-tls-test ok"));
    let (ok, text) = sh(&put);
    assert!(ok && text.contains("OK"), "{text}");
    // The status script kbz-faults uses finds the key where kbz pushes it; here it is moved,
    // so the script's TLS branch is checked by hand.
    let status = moved(&kbz_etcd::status_script("127.0.0.1".parse().expect("ip")));
    let tls_branch = status
        .split("; then ")
        .nth(1)
        .and_then(|s| s.split("; else ").next())
        .expect("tls branch");
    let (ok, text) = sh(tls_branch);
    assert!(ok && kbz_etcd::is_leader(&text) == Some(true), "{text}");

    // Refused: the CA but no client certificate, and plain HTTP.
    let ca = d.join("ca.crt");
    let no_cert = format!(
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:{client} --cacert={} \
         --dial-timeout=2s --command-timeout=3s get /kbz-tls-test",
        ca.display()
    );
    let (ok, text) = sh(&no_cert);
    assert!(
        !ok && !text.contains("ok\n"),
        "answered without a certificate: {text}"
    );
    let plain = format!(
        "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:{client} --dial-timeout=2s \
         --command-timeout=3s get /kbz-tls-test"
    );
    let (ok, text) = sh(&plain);
    assert!(
        !ok && !text.contains("ok\n"),
        "answered over plain HTTP: {text}"
    );
    assert!(Path::new(&d.join("data")).is_dir());
}

/// Three etcd members on 127.0.0.11-13 with their data under a temporary root, each
/// controlled by `ROOT/<host>/ctl start|stop` (what [`kbz_etcd::backup::Layout`] runs in
/// place of systemctl); the guard kills every member by its pid however the test ends.
struct Members {
    root: tempfile::TempDir,
    hosts: Vec<Host>,
}

impl Drop for Members {
    fn drop(&mut self) {
        for h in &self.hosts {
            let pid = self.root.path().join(&h.hostname).join("pid");
            if let Ok(p) = std::fs::read_to_string(pid) {
                let _ = Command::new("kill").arg("-9").arg(p.trim()).status();
            }
        }
    }
}

fn members(client: u16, peer: u16) -> Members {
    let root = tempfile::tempdir().expect("tmp");
    let hosts: Vec<Host> = (11..=13)
        .map(|i| {
            Host::new(
                &format!("m{i}"),
                format!("127.0.0.{i}").parse().expect("ip"),
                &[Role::Etcd],
            )
        })
        .collect();
    let initial = hosts
        .iter()
        .map(|h| format!("{}=http://{}:{peer}", h.hostname, h.ip))
        .collect::<Vec<_>>()
        .join(",");
    for h in &hosts {
        let d = root.path().join(&h.hostname);
        std::fs::create_dir_all(&d).expect("dir");
        let ctl = format!(
            "d={d}\ncase \"$1\" in\nstart) setsid etcd --name {n} --data-dir \"$d/data\" --listen-peer-urls http://{ip}:{peer} --initial-advertise-peer-urls http://{ip}:{peer} --listen-client-urls http://{ip}:{client} --advertise-client-urls http://{ip}:{client} --initial-cluster {initial} --initial-cluster-token kbz-loopback --initial-cluster-state new >>\"$d/etcd.log\" 2>&1 </dev/null &\necho $! >\"$d/pid\" ;;\nstop) p=$(cat \"$d/pid\"); kill \"$p\"; while kill -0 \"$p\" 2>/dev/null; do sleep 0.1; done ;;\nesac\n",
            d = d.display(),
            n = h.hostname,
            ip = h.ip,
        );
        std::fs::write(d.join("ctl"), ctl).expect("ctl");
    }
    Members { root, hosts }
}

fn etcdctl(ip: &str, client: u16, args: &str) -> String {
    let (ok, out) = sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints=http://{ip}:{client} --dial-timeout=2s --command-timeout=5s {args}"
    ));
    assert!(ok, "etcdctl {args}: {out}");
    out
}

fn wait_healthy(m: &Members, client: u16) {
    let endpoints = m
        .hosts
        .iter()
        .map(|h| format!("http://{}:{client}", h.ip))
        .collect::<Vec<_>>()
        .join(",");
    let start = Instant::now();
    loop {
        let (ok, out) = sh(&format!(
            "ETCDCTL_API=3 etcdctl --endpoints={endpoints} --dial-timeout=1s --command-timeout=2s endpoint health"
        ));
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never healthy: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_the_three_members_and_drills_in_a_scratch_etcd() {
    use kbz_core::backup::{self, Backup, BackupEnv, BackupRequest, Repository, Target};
    use kbz_core::component::HostExec;
    use kbz_etcd::backup::{EtcdBackup, Layout};
    use kbz_exec::LocalExecutor;
    use std::sync::Arc;

    kbz_testkit::require_tool("etcd", "etcd-server");
    kbz_testkit::require_tool("etcdctl", "etcd-client");
    let ips: Vec<std::net::IpAddr> = (11..=13)
        .map(|i| format!("127.0.0.{i}").parse().expect("ip"))
        .collect();
    let client = kbz_testkit::free_port_on(&ips, &[]);
    let peer = kbz_testkit::free_port_on(&ips, &[client]);
    let lo: [std::net::IpAddr; 1] = ["127.0.0.1".parse().expect("ip")];
    let drill_client = kbz_testkit::free_port_on(&lo, &[client, peer]);
    let drill = (
        drill_client,
        kbz_testkit::free_port_on(&lo, &[client, peer, drill_client]),
    );
    let m = members(client, peer);
    for h in &m.hosts {
        let (ok, out) = sh(&format!(
            "sh {}/{}/ctl start",
            m.root.path().display(),
            h.hostname
        ));
        assert!(ok, "{out}");
    }
    wait_healthy(&m, client);
    let first = m.hosts[0].ip.to_string();
    for i in 1..=5 {
        etcdctl(&first, client, &format!("put /app/k{i} v{i}"));
    }

    let backup_host = Host::new("bk", "127.0.0.1".parse().expect("ip"), &[Role::Backup]);
    let mut hosts = m.hosts.clone();
    hosts.push(backup_host.clone());
    let inv = Inventory {
        path: "servers.tsv".into(),
        hosts,
    };
    let mut cfg = Config::default();
    cfg.cluster.name = "loopback".into();
    cfg.timeouts.readiness = 60;
    let ctx = Context::new(inv, cfg, Secrets::in_memory());
    let hx = |h: &Host| HostExec {
        host: h.clone(),
        exec: Arc::new(LocalExecutor::named(&h.hostname)),
    };
    let member_execs: Vec<HostExec> = m.hosts.iter().map(hx).collect();
    let bk = hx(&backup_host);
    let repo_dir = m.root.path().join("repo").display().to_string();
    let repo = Repository::new(bk.exec.clone(), &repo_dir);
    let env = BackupEnv {
        ctx: &ctx,
        hosts: &member_execs,
        backup_host: &bk,
        repo: &repo,
    };
    let etcd = EtcdBackup {
        layout: Layout {
            root: Some(m.root.path().to_path_buf()),
            client_port: client,
            peer_port: peer,
            drill_ports: drill,
        },
    };

    // Backup: the canary, the revision, the key count at that revision (5 + the canary).
    let started = chrono::Utc::now();
    let req = BackupRequest {
        id: backup::manifest::new_id("etcd", started),
        kind: None,
    };
    let taken = etcd.backup(&env, &req).await.expect("backup");
    assert_eq!(taken.contents["key_count"], 6, "{:?}", taken.contents);
    assert_eq!(taken.contents["canary"], serde_json::json!(req.id));
    assert!(taken.contents["revision"].as_u64().expect("revision") >= 6);
    assert!(
        taken.tool_version.starts_with("etcdctl version: 3."),
        "{}",
        taken.tool_version
    );
    let key = kbz_core::Secret::generate(32);
    let (manifest, sealed) = backup::seal("etcd", &req, &taken, started, Some(&key)).expect("seal");
    repo.store(&manifest, sealed.as_deref())
        .await
        .expect("store");
    let (listed, bad) = repo.list().await.expect("list");
    assert!(bad.is_empty(), "{bad:?}");
    let chosen = backup::manifest::select(&listed, "etcd", &Target::Latest).expect("latest");
    assert_eq!(chosen, &manifest);
    let checked = repo.checksums(&listed).await.expect("checksums");
    assert_eq!(
        checked,
        vec![(manifest.id.clone(), backup::repo::Checked::Good)]
    );

    // Changes after the backup, which the restore must undo.
    etcdctl(&first, client, "del /app/k1");
    etcdctl(&first, client, "put /app/k9 late");

    let plan = etcd.restore_plan(&env, chosen, None).await.expect("plan");
    assert!(plan.running, "a healthy cluster needs --force");
    assert_eq!(plan.stops.len(), 3);
    let bytes = repo.fetch(chosen).await.expect("fetch");
    let plain = backup::unseal(chosen, bytes, Some(&key)).expect("unseal");
    let restored = etcd
        .restore(&env, chosen, Some(&plain), None)
        .await
        .expect("restore");
    assert_eq!(restored.contents["key_count"], 6, "{}", restored.detail);
    wait_healthy(&m, client);
    for h in &m.hosts {
        let ip = h.ip.to_string();
        assert_eq!(
            etcdctl(&ip, client, "get /app/k1 --print-value-only").trim(),
            "v1",
            "{}: the deleted key is back",
            h.hostname
        );
        assert_eq!(
            etcdctl(&ip, client, "get /app/k9 --print-value-only").trim(),
            ""
        );
    }
    let members_out = etcdctl(&first, client, "member list");
    assert_eq!(members_out.lines().count(), 3, "{members_out}");

    // The keys a restore hook names go from the restored cluster (one exact, one prefix,
    // one absent), and nothing else does.
    etcdctl(&first, client, "put /svc/x/leader a");
    etcdctl(&first, client, "put /svc/x/members/m1 a");
    etcdctl(&first, client, "put /svc/x/members/m2 b");
    etcdctl(&first, client, "put /svc/x/config c");
    let keys: Vec<String> = ["/svc/x/leader", "/svc/x/members/", "/svc/x/failover"]
        .map(String::from)
        .to_vec();
    assert_eq!(etcd.drop_keys(&env, &keys).await.expect("drop"), 3);
    let left = etcdctl(&first, client, "get --prefix /svc/ --keys-only");
    let left: Vec<&str> = left.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(left, vec!["/svc/x/config"]);
    etcdctl(&first, client, "del /svc/x/config");

    // The drill: a scratch etcd on the backup host, compared, then gone.
    let drilled = etcd.drill(&env, chosen, Some(&plain)).await.expect("drill");
    backup::judge("etcd", chosen, &drilled).expect("the drill matches the manifest");
    assert_eq!(drilled.compared.len(), 2);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", drill.0)).is_err(),
        "scratch etcd stopped"
    );
    assert!(!Path::new(&format!("/var/tmp/kbz-drill-etcd-{}", chosen.id)).exists());

    // A flipped byte in the stored artifact is E044 naming it.
    let path = repo.artifact_path(chosen).expect("path");
    let mut stored = std::fs::read(&path).expect("read");
    let i = stored.len() / 2;
    stored[i] ^= 0x01;
    std::fs::write(&path, stored).expect("write");
    let checked = repo.checksums(&listed).await.expect("checksums");
    match &checked[0].1 {
        backup::repo::Checked::Bad(why) => assert!(why.contains(&path), "{why}"),
        other => panic!("a flipped byte passed: {other:?}"),
    }
    let e = repo.fetch(chosen).await.expect_err("flipped");
    assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E044);
    assert!(e.to_string().contains(&chosen.id), "{e}");
}
