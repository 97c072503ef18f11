//! Three real Galera nodes on loopback (127.0.0.31-33 stand in for three hosts), each a
//! `mariadbd` with its own datadir (made by `mariadb-install-db`, as Debian's postinst does),
//! socket, pid file and ports, configured by the file kbz renders and driven by kbz's own
//! cluster step through a local executor: bootstrap, users, joins by SST (mariabackup via
//! socat); a write through the application user on one node read on the others; the
//! clustercheck answering 200; a converged re-run that changes nothing; then n1 killed, a
//! row written on n2 while it is down, and the others killed with SIGKILL (a power cut): the
//! automated full-cluster recovery must start from n2 (the highest seqno, not the first
//! host), after which every row is on every node and writes work again. Fails with the `apt-get install` line
//! when a tool is missing (never a silent skip); CI installs them.

use kbz_core::component::HostExec;
use kbz_core::{
    ClusterChangeKind, Cmd, Config, Context, Executor, Host, Inventory, Role, Secret, Secrets,
};
use kbz_exec::LocalExecutor;
use kbz_mariadb::layout::{self, Layout};
use kbz_mariadb::{cluster, render, SECRET_APP, SECRET_CHECK, SECRET_MONITOR, SECRET_SST};
use kbz_testkit::free_port_on;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kills (SIGKILL, by the pid in each node's pid file) every server the test started, however
/// the test ends.
struct Servers(Vec<PathBuf>);

impl Servers {
    fn pids(&self) -> Vec<i32> {
        self.0
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// SIGKILL every server and wait until each is gone.
    fn kill_all(&self) {
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && self
                .pids()
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn require_tools() {
    for (tool, pkg) in [
        ("mariadbd", "mariadb-server"),
        ("mariadb-install-db", "mariadb-server"),
        ("galera_recovery", "mariadb-server"),
        ("mariadb", "mariadb-client"),
        ("mariabackup", "mariadb-backup"),
        ("socat", "socat"),
    ] {
        kbz_testkit::require_tool(tool, pkg);
    }
    assert!(
        Path::new("/usr/lib/galera/libgalera_smm.so").exists(),
        "the Galera provider is missing: apt-get install galera-4"
    );
}

async fn sh(script: &str) -> (i32, String) {
    let out = LocalExecutor::new()
        .run(&Cmd::new(script))
        .await
        .expect("run");
    (
        out.status,
        format!("{}{}", out.stdout_str(), out.stderr_str())
            .trim()
            .to_string(),
    )
}

/// SQL as the application user over TCP to a node (the password from a client file).
async fn app_sql(client_cnf: &Path, h: &Host, port: u16, sql: &str) -> String {
    let (rc, out) = sh(&format!(
        "timeout 20 mariadb --defaults-extra-file='{}' -h {} -P {port} -N -B -e \"{sql}\"",
        client_cnf.display(),
        h.ip
    ))
    .await;
    assert_eq!(rc, 0, "{} on {}: {out}", sql, h.hostname);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_bootstrap_replicate_and_recover_after_a_power_cut() {
    require_tools();
    assert!(
        kbz_testkit::sshd::is_root(),
        "this test starts mariadbd as the mysql user: run it as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // mariadbd runs as mysql: it must reach its directories under the tempdir.
    sh(&format!("chmod 755 '{}'", dir.path().display())).await;
    let hosts: Vec<Host> = [
        ("n1", "127.0.0.31"),
        ("n2", "127.0.0.32"),
        ("n3", "127.0.0.33"),
    ]
    .iter()
    .map(|(n, ip)| Host::new(n, ip.parse().expect("ip"), &[Role::Mariadb]))
    .collect();
    let ips: Vec<IpAddr> = hosts.iter().map(|h| h.ip).collect();
    let port = free_port_on(&ips, &[]);
    let mut gport = free_port_on(&ips, &[port]);
    for _ in 0..50 {
        if [gport + 1, gport + 2].iter().all(|p| {
            ips.iter()
                .all(|ip| std::net::TcpListener::bind((*ip, *p)).is_ok())
        }) && ![gport, gport + 1, gport + 2].contains(&port)
        {
            break;
        }
        gport = free_port_on(&ips, &[port]);
    }
    let mut l = Layout::loopback(dir.path().to_path_buf(), port, gport);
    l.check_port = free_port_on(&ips, &[port, gport, gport + 1, gport + 2]);

    let mut cfg = Config::default();
    cfg.cluster.name = "kbz-loopback".into();
    cfg.cluster.subnet = Some("127.0.0.0/8".parse().expect("net"));
    cfg.timeouts.readiness = 180;
    let mut secrets = Secrets::in_memory();
    // The SST password as kbz generates them; the others with characters an option file,
    // SQL or a shell could trip over (they travel as hashes or quoted option values).
    secrets.set(SECRET_SST, Secret::new("Sst0penSesame4Galera7x"));
    secrets.set(SECRET_APP, Secret::new("a'pp \"pw\" $HOME \\ ;x#1"));
    secrets.set(SECRET_CHECK, Secret::new("ch`eck` $(id) \"pw\"#2"));
    secrets.set(SECRET_MONITOR, Secret::new("unused"));
    let inv = Inventory {
        path: "loopback.tsv".into(),
        hosts: hosts.clone(),
    };
    let ctx = Context::new(inv, cfg, secrets);

    let servers = Servers(
        hosts
            .iter()
            .map(|h| PathBuf::from(l.path(h, "/run/mysqld/mysqld.pid")))
            .collect(),
    );
    for h in &hosts {
        for d in [
            layout::DATA_DIR,
            "/run/mysqld",
            "/var/log/mysql",
            "/etc/mysql/mariadb.conf.d",
            "/usr/local/lib/kbz",
        ] {
            std::fs::create_dir_all(l.path(h, d)).expect("mkdir");
        }
        for f in render::files(&ctx, h, &l).expect("render") {
            if f.path.contains("/systemd/") {
                continue;
            }
            std::fs::write(&f.path, &f.content).expect("write");
            sh(&format!("chmod {:o} '{}'", f.mode, f.path)).await;
        }
        let root = l.path(h, "");
        let (rc, out) = sh(&format!(
            "chown -R mysql:mysql '{root}/var' '{root}/run' && chgrp mysql '{root}/etc/mysql/mariadb.conf.d/60-kbz-galera.cnf' '{root}/etc/mysql/kbz-clustercheck.cnf' && \
             mariadb-install-db --defaults-file='{}' --user=mysql --auth-root-authentication-method=socket --skip-test-db >'{root}/install.log' 2>&1 || {{ cat '{root}/install.log'; exit 1; }}",
            l.path(h, layout::GALERA_CNF)
        ))
        .await;
        assert_eq!(rc, 0, "mariadb-install-db on {}: {out}", h.hostname);
    }
    let hx: Vec<HostExec> = hosts
        .iter()
        .map(|h| HostExec {
            host: h.clone(),
            exec: Arc::new(LocalExecutor::named(&h.hostname)) as Arc<dyn Executor>,
        })
        .collect();

    // Install: bootstrap n1, users on it, n2 and n3 join by SST.
    let changes = cluster::converge(&ctx, &hx, &l).await.expect("bootstrap");
    let kinds: Vec<(&str, ClusterChangeKind)> =
        changes.iter().map(|c| (c.host.as_str(), c.kind)).collect();
    assert_eq!(
        kinds[0],
        ("n1", ClusterChangeKind::Bootstrap),
        "{changes:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|(_, k)| *k == ClusterChangeKind::Join)
            .map(|(h, _)| *h)
            .collect::<Vec<_>>(),
        ["n2", "n3"]
    );
    assert!(changes
        .iter()
        .any(|c| c.detail == "create user kbz_sst@localhost"));
    assert!(changes.iter().any(|c| c.detail == "create database app"));

    // A converged re-run only reads.
    let again = cluster::converge(&ctx, &hx, &l).await.expect("re-run");
    assert!(again.is_empty(), "{again:?}");

    // The application user logs in with the password whose hash kbz sent; a write on n1 is
    // read on n2 and n3.
    let client = dir.path().join("app-client.cnf");
    std::fs::write(
        &client,
        format!(
            "[client]\nuser = app\npassword = \"{}\"\n",
            render::cnf_quote(SECRET_APP, ctx.secret(SECRET_APP).expect("s").expose()).expect("q")
        ),
    )
    .expect("client cnf");
    app_sql(
        &client,
        &hosts[0],
        port,
        "CREATE TABLE app.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20)); INSERT INTO app.t (v) VALUES ('before-cut'), ('two')",
    )
    .await;
    for h in &hosts[1..] {
        assert_eq!(
            app_sql(&client, h, port, "SELECT COUNT(*) FROM app.t").await,
            "2"
        );
    }
    // The application user reaches nothing but its database; root has no network login.
    let (rc, _) = sh(&format!(
        "timeout 10 mariadb --defaults-extra-file='{}' -h {} -P {port} -e 'SELECT 1 FROM mysql.user' 2>&1",
        client.display(),
        hosts[1].ip
    ))
    .await;
    assert_ne!(rc, 0, "app must not read mysql.user");
    let (rc, _) = sh(&format!(
        "timeout 10 mariadb --no-defaults -u root -h {} -P {port} -e 'SELECT 1' 2>&1",
        hosts[1].ip
    ))
    .await;
    assert_ne!(rc, 0, "root must not log in over TCP");

    // The clustercheck (the rendered script, with the health-check user) says 200 on a
    // Synced node.
    let (rc, out) = sh(&format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sh '{}'",
        l.path(&hosts[2], layout::CLUSTERCHECK)
    ))
    .await;
    assert_eq!(rc, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    // The same behind socat as kbz's unit runs it (as the mysql user), asked over HTTP the
    // way HAProxy's check does.
    let mut daemons = kbz_testkit::Daemons::new();
    daemons.add(
        "clustercheck",
        // setpriv execs (runuser would stay the parent): the kept pid is socat's own, so
        // the guard's kill ends it.
        Command::new("setpriv")
            .args([
                "--reuid=mysql",
                "--regid=mysql",
                "--init-groups",
                "--",
                "sh",
                "-c",
            ])
            .arg(format!("exec {}", render::check_exec_start(&hosts[2], &l)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat"),
    );
    let check = |want: &'static str| {
        let addr = std::net::SocketAddr::new(hosts[2].ip, l.check_port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = std::net::TcpStream::connect(addr)
                .and_then(|mut c| {
                    use std::io::{Read, Write};
                    c.set_read_timeout(Some(Duration::from_secs(10)))?;
                    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
                    let mut r = String::new();
                    c.read_to_string(&mut r)?;
                    Ok(r)
                })
                .unwrap_or_default();
            if got.starts_with(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let got = check("HTTP/1.1 200 OK");
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");

    // n1 dies first; a write lands on n2 and n3 while it is down; then the power cut kills
    // the rest. Only n2 and n3 have the last commit: the recovery must start from one of them.
    let n1_pid =
        std::fs::read_to_string(l.path(&hosts[0], "/run/mysqld/mysqld.pid")).expect("n1 pid");
    sh(&format!("kill -9 {}", n1_pid.trim())).await;
    let t = Instant::now();
    loop {
        let (_, out) = sh(&format!(
            "{} -e \"SHOW STATUS LIKE 'wsrep_cluster_size'\"",
            l.client(&hosts[1])
        ))
        .await;
        if out.ends_with("\t2") || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    app_sql(
        &client,
        &hosts[1],
        port,
        "INSERT INTO app.t (v) VALUES ('n1-down')",
    )
    .await;
    servers.kill_all();
    // With its node down the check fails, so HAProxy sends nobody there.
    let got = check("HTTP/1.1 503");
    assert!(got.starts_with("HTTP/1.1 503 Service Unavailable"), "{got}");
    let health_before = sh(&format!("cat '{}'", l.path(&hosts[0], layout::GRASTATE)))
        .await
        .1;
    assert!(health_before.contains("seqno:   -1"), "{health_before}");
    let t = Instant::now();
    let recovered = cluster::converge(&ctx, &hx, &l).await.expect("recovery");
    let recovery_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        recovered[0].kind,
        ClusterChangeKind::Bootstrap,
        "{recovered:?}"
    );
    assert!(
        recovered[0].detail.starts_with("full-cluster recovery"),
        "{}",
        recovered[0].detail
    );
    assert_eq!(
        recovered
            .iter()
            .filter(|c| c.kind == ClusterChangeKind::Join)
            .count(),
        2,
        "{recovered:?}"
    );
    eprintln!(
        "full-cluster recovery: {recovery_secs:.1}s, bootstrapped {} ({})",
        recovered[0].host, recovered[0].detail
    );
    for h in &hosts {
        assert_eq!(
            app_sql(&client, h, port, "SELECT COUNT(*) FROM app.t").await,
            "3",
            "{}",
            h.hostname
        );
    }
    app_sql(
        &client,
        &hosts[2],
        port,
        "INSERT INTO app.t (v) VALUES ('after-cut')",
    )
    .await;
    assert_eq!(
        app_sql(
            &client,
            &hosts[0],
            port,
            "SELECT v FROM app.t ORDER BY id DESC LIMIT 1"
        )
        .await,
        "after-cut"
    );
    let got = check("HTTP/1.1 200 OK");
    assert!(
        got.starts_with("HTTP/1.1 200 OK"),
        "after the recovery: {got}"
    );
    drop(daemons);
    let after = cluster::converge(&ctx, &hx, &l).await.expect("re-run");
    assert!(after.is_empty(), "{after:?}");
    drop(servers);
}
