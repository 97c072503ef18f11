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
