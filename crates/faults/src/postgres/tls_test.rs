//! A real PostgreSQL 15 on loopback with `ssl = on`, the member certificate from kbz's CA and
//! only `hostssl` network access: the workload's connection with the cluster CA is encrypted
//! and verified, one without TLS is refused; through a route (a bastion tunnel's local end)
//! the certificate is still verified against the real address. The server runs as the `postgres` user (it
//! refuses root) and is stopped by its pid, whatever the test's outcome.

use super::PgTarget;
use kbz_core::pki::{Member, Pki};
use kbz_core::Secret;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A VIP this machine does not have (TEST-NET-1): reached only through a route.
const VIP: &str = "192.0.2.100";

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

#[tokio::test(flavor = "multi_thread")]
async fn the_workload_speaks_tls_with_the_cluster_ca_and_plaintext_is_refused() {
    assert!(
        Path::new(BIN).join("postgres").is_file(),
        "PostgreSQL 15 is not installed, so this test cannot run: `apt-get install -y \
         postgresql-15` (.ci/run does)"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let pki = Pki::in_memory(
        "pg-tls",
        &[Member {
            hostname: "lo1".into(),
            ip: "127.0.0.1".parse().expect("ip"),
            // The VIP, as kbz's member certificates name it.
            extra_ips: vec![VIP.parse().expect("ip")],
        }],
    )
    .expect("CA");
    let member = pki.member("lo1").expect("member");
    std::fs::write(d.join("pw"), "s3cret-pw\n").expect("pw");
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Network access only over TLS, as kbz's pg_hba with [security] tls.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all peer\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("hba");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let log = std::fs::File::create(d.join("log")).expect("log");
    let mut cmd = Command::new(format!("{BIN}/postgres"));
    as_postgres(&mut cmd)
        .args(["-D", &data.display().to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("port={port}")])
        .args(["-c", &format!("unix_socket_directories={}", d.display())])
        .args(["-c", "ssl=on"])
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

    let target = PgTarget {
        addr: "127.0.0.1".parse().expect("ip"),
        port,
        user: "postgres".into(),
        password: Secret::new("s3cret-pw"),
        dbname: "postgres".into(),
        timeout: Duration::from_secs(2),
        tls_ca: Some(pki.ca_pem().to_string()),
        routes: Default::default(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match target.connect().await {
            Ok(c) => break c,
            Err(e) => {
                let log = std::fs::read_to_string(d.join("log")).unwrap_or_default();
                assert!(Instant::now() < deadline, "no TLS connection: {e}\n{log}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    assert!(row.get::<_, bool>(0), "the connection is not encrypted");

    let plain = PgTarget {
        tls_ca: None,
        ..target.clone()
    };
    let err = plain.connect().await.expect_err("plaintext accepted");
    assert!(err.to_string().contains("28000"), "{err}");
    // Another CA's certificate is not trusted.
    let other = Pki::in_memory("other", &[]).expect("CA");
    let wrong = PgTarget {
        tls_ca: Some(other.ca_pem().to_string()),
        ..target.clone()
    };
    assert!(wrong.connect().await.is_err(), "a foreign CA was trusted");

    // Through a route: the socket goes to the route, TLS verifies the real address (the VIP,
    // named by the certificate), and `at()` keeps the routes.
    let vip: std::net::IpAddr = VIP.parse().expect("ip");
    let mut routes = kbz_core::net::Routes::direct();
    routes.insert(
        vip,
        5432,
        ("127.0.0.1".parse::<std::net::IpAddr>().expect("ip"), port).into(),
    );
    let routed = PgTarget {
        addr: "127.0.0.1".parse().expect("ip"),
        port: 5432,
        routes,
        ..target.clone()
    }
    .at(vip);
    let c = routed
        .connect()
        .await
        .unwrap_or_else(|e| panic!("no connection through the route: {e}"));
    let row = c
        .query_one("select inet_server_addr()::text", &[])
        .await
        .expect("server address");
    assert_eq!(row.get::<_, String>(0), "127.0.0.1/32");
    // Errors name the real address (the workload table does not exist here).
    let err = super::read_ids(&routed)
        .await
        .expect_err("no workload table");
    assert!(err.to_string().contains(&format!("{VIP}:5432")), "{err}");
    // An address the certificate does not name, routed to the same server: TLS refuses it,
    // so the name checked is not the route's 127.0.0.1.
    let stranger: std::net::IpAddr = "192.0.2.99".parse().expect("ip");
    let mut routes = kbz_core::net::Routes::direct();
    routes.insert(
        stranger,
        5432,
        ("127.0.0.1".parse::<std::net::IpAddr>().expect("ip"), port).into(),
    );
    let unnamed = PgTarget {
        routes,
        ..routed.at(stranger)
    };
    let err = unnamed
        .connect()
        .await
        .expect_err("a certificate that does not name the address");
    assert!(
        err.to_string().contains("192.0.2.99:5432")
            && err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
