//! A real PostgreSQL 15 on this machine with the pg_hba kbz renders (with `[security] tls`:
//! `ssl = on`, the member certificate from kbz's CA, network lines `hostssl`), the member's
//! inventory address being this machine's first global IPv4 address: the superuser is
//! refused over TCP (loopback and the network, with and without TLS) and reachable over the
//! socket; kbz's setup (the real psql script, the password on stdin) creates the
//! application role and database once and nothing on the second run; the application role
//! connects over the network only with TLS, verified against the cluster CA, only to its
//! own database, can create its tables and read the WAL position the failover workload
//! reads; the password never reaches the server log. The server runs as the `postgres`
//! user (it refuses root) and is stopped by its pid, whatever the test's outcome.

use kbz_core::{Component, Context, Host, Inventory, Role, Secrets};
use kbz_postgres::{app_setup_sql, pg_hba, tls, Postgres, APP_SETUP_SCRIPT};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A password psql and SQL must carry intact: a quote, a backslash, a percent sign.
const APP_PW: &str = "Ap'p\\pw%9zQ";
const SUPER_PW: &str = "Sup3rPwZq81x";

/// Stops the server this test started (SIGTERM by pid, then SIGKILL), however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!("no `postgres` user: `apt-get install -y postgresql-15` (.ci/run does)")
        })
}

fn as_postgres(cmd: &mut Command) -> &mut Command {
    cmd.uid(id("-u")).gid(id("-g"))
}

/// This machine's first global IPv4 address: the "network" side of pg_hba.
fn global_ipv4() -> IpAddr {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .expect(
            "this test needs a global IPv4 address on this machine (the member's network \
             address, distinct from loopback): `ip -4 addr show scope global` lists none",
        )
}

/// psql over TCP with a connection string, the password in the environment of this
/// process (the controller side), never on the command line.
fn psql_tcp(conninfo: &str, password: &str, sql: &str) -> Output {
    Command::new("psql")
        .args(["-XAtq", "-d", conninfo, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .expect("psql (postgresql-client-15)")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn refused(o: &Output, why: &str) {
    assert!(!o.status.success(), "{why}: connected\n{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pg_hba.conf"),
        "{why}: refused, but not by pg_hba\n{}",
        text(o)
    );
}

/// kbz's setup script, run as on a member (as root, `runuser` to postgres), pointed at this
/// server's socket and port by PGHOST/PGPORT.
fn setup(sock: &Path, port: u16, sql: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(APP_SETUP_SCRIPT)
        .env("PGHOST", sock)
        .env("PGPORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write");
    child.wait_with_output().expect("setup")
}

#[test]
fn superuser_is_local_only_and_the_application_role_needs_tls_over_the_network() {
    assert!(
        Path::new(BIN).join("postgres").is_file(),
        "PostgreSQL 15 is not installed, so this test cannot run: `apt-get install -y \
         postgresql-15` (.ci/run does)"
    );
    let ip = global_ipv4();
    let inv = Inventory {
        path: "servers.tsv".into(),
        hosts: vec![Host::new("lo1", ip, &[Role::Etcd, Role::Postgres])],
    };
    let mut cfg = kbz_core::Config::default();
    cfg.cluster.subnet = Some(format!("{ip}/32").parse().expect("net"));
    let plain = Context::new(inv, cfg, Secrets::placeholders(Postgres.secret_names()));
    let ctx = kbz_testkit::with_tls(&plain);
    let (pki, member) = ctx.tls_member("lo1").expect("tls").expect("member");

    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    std::fs::write(d.join("pw"), format!("{SUPER_PW}\n")).expect("pw");
    std::fs::write(d.join("ca.crt"), pki.ca_pem()).expect("ca");
    std::fs::write(d.join("member.crt"), &member.cert_pem).expect("crt");
    std::fs::write(d.join("member.key"), member.key.expose()).expect("key");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chmod 0755 {0} && chown -R postgres: {0} && chmod 0600 {0}/member.key",
            d.display()
        ))
        .status()
        .expect("chown");
    assert!(status.success());
    let data = d.join("data");
    let out = as_postgres(Command::new(format!("{BIN}/initdb")).args([
        "-D",
        &data.display().to_string(),
        "-U",
        "postgres",
        "--pwfile",
        &d.join("pw").display().to_string(),
        "-A",
        "scram-sha-256",
    ]))
    .output()
    .expect("initdb");
    assert!(out.status.success(), "{}", text(&out));
    // The pg_hba kbz renders with [security] tls, as Patroni writes it.
    let hba = tls::hostssl(pg_hba(&ctx));
    std::fs::write(data.join("pg_hba.conf"), hba.join("\n") + "\n").expect("hba");
    let port = kbz_testkit::free_port_on(&[ip, "127.0.0.1".parse().expect("lo")], &[]);
    let log = std::fs::File::create(d.join("log")).expect("log");
    let mut cmd = Command::new(format!("{BIN}/postgres"));
    as_postgres(&mut cmd)
        .args(["-D", &data.display().to_string()])
        .args(["-c", &format!("listen_addresses={ip},127.0.0.1")])
        .args(["-c", &format!("port={port}")])
        .args(["-c", &format!("unix_socket_directories={}", d.display())])
        .args(["-c", "ssl=on"])
        .args(["-c", "password_encryption=scram-sha-256"])
        .args([
            "-c",
            &format!("ssl_cert_file={}", d.join("member.crt").display()),
        ])
        .args([
            "-c",
            &format!("ssl_key_file={}", d.join("member.key").display()),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let _server = Server(cmd.spawn().expect("start postgres"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(format!("{BIN}/pg_isready"))
            .args([
                "-q",
                "-h",
                &d.display().to_string(),
                "-p",
                &port.to_string(),
            ])
            .status()
            .expect("pg_isready");
        if ready.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(d.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // kbz's setup creates the role and the database, then nothing.
    let sql = app_setup_sql("app", "app", APP_PW);
    let first = setup(d, port, &sql);
    assert!(first.status.success(), "{}", text(&first));
    let created = kbz_postgres::app_changes(&ctx, "lo1", &String::from_utf8_lossy(&first.stdout));
    let details: Vec<&str> = created.iter().map(|c| c.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "application role app (login, password from the secrets file)",
            "application database app owned by app",
        ],
        "{}",
        text(&first)
    );
    let again = setup(d, port, &sql);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        kbz_postgres::app_changes(&ctx, "lo1", &String::from_utf8_lossy(&again.stdout)).is_empty(),
        "{}",
        text(&again)
    );

    let ca = d.join("ca.crt").display().to_string();
    let tcp = |host: &str, user: &str, db: &str, ssl: &str| {
        format!("host={host} port={port} user={user} dbname={db} {ssl}")
    };
    let verified = format!("sslmode=verify-full sslrootcert={ca}");
    let net = ip.to_string();

    // The superuser: refused over TCP, from loopback and the network, with and without TLS,
    // even with its right password; the local socket (peer, as the postgres OS user) works.
    for (host, ssl) in [
        ("127.0.0.1", "sslmode=disable"),
        ("127.0.0.1", "sslmode=require"),
        (net.as_str(), "sslmode=disable"),
        (net.as_str(), verified.as_str()),
    ] {
        let o = psql_tcp(
            &tcp(host, "postgres", "postgres", ssl),
            SUPER_PW,
            "select 1",
        );
        refused(&o, &format!("superuser over TCP to {host} ({ssl})"));
    }
    let local = as_postgres(&mut Command::new("psql"))
        .args([
            "-XAtq",
            "-h",
            &d.display().to_string(),
            "-p",
            &port.to_string(),
        ])
        .args(["-d", "postgres", "-c", "select current_user"])
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&local.stdout).trim(),
        "postgres",
        "{}",
        text(&local)
    );

    // The application role over the network: TLS only, verified against the cluster CA.
    refused(
        &psql_tcp(
            &tcp(&net, "app", "app", "sslmode=disable"),
            APP_PW,
            "select 1",
        ),
        "the application role without TLS",
    );
    let o = psql_tcp(
        &tcp(&net, "app", "app", &verified),
        APP_PW,
        "create table kbz_t (id int primary key); insert into kbz_t values (1); \
         select ssl from pg_stat_ssl where pid = pg_backend_pid(); \
         select pg_current_wal_lsn() is not null; \
         select rolsuper from pg_roles where rolname = current_user",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "t\nt\nf\n",
        "{}",
        text(&o)
    );
    // Only its own database, and a wrong password is refused.
    refused(
        &psql_tcp(&tcp(&net, "app", "postgres", &verified), APP_PW, "select 1"),
        "the application role to the postgres database",
    );
    let wrong = psql_tcp(&tcp(&net, "app", "app", &verified), "wrong", "select 1");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        text(&wrong)
    );
    // From loopback (an operator on the member) without TLS, as pg_hba allows.
    let lo = psql_tcp(
        &tcp("127.0.0.1", "app", "app", "sslmode=disable"),
        APP_PW,
        "select count(*) from kbz_t",
    );
    assert_eq!(
        String::from_utf8_lossy(&lo.stdout).trim(),
        "1",
        "{}",
        text(&lo)
    );

    // A failing setup statement (a reserved role name) that holds the password: the server
    // logs the error, never the statement.
    let failing = setup(d, port, &app_setup_sql("pg_kbz", "app", APP_PW));
    assert!(!failing.status.success(), "{}", text(&failing));
    assert!(
        String::from_utf8_lossy(&failing.stderr).contains("reserved"),
        "{}",
        text(&failing)
    );

    // The password never reached the server's log, though statements failed above.
    let log = std::fs::read_to_string(d.join("log")).expect("log");
    assert!(
        log.contains("password authentication failed") && log.contains("reserved"),
        "{log}"
    );
    assert!(!log.contains(APP_PW) && !log.contains("Ap''p"), "{log}");
}
