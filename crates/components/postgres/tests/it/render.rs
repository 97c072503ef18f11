//! Snapshots of every rendered file for the example inventory (`examples/servers.tsv` +
//! `examples/kbz.toml`, also with `[security] tls`), Patroni's own validator on the rendered
//! config, and the readiness script against a stub REST API.

use kbz_core::{Component, Config, Context, Resource, Secrets};
use kbz_postgres::Postgres;
use kbz_testkit::{db_inventory, hostnames, members, rendered_files, require_tool, snapshot_name};
use std::net::TcpListener;
use std::process::Command;

fn example_context() -> Context {
    kbz_testkit::example_context(Postgres.secret_names())
}

#[test]
fn rendered_files_for_the_example_inventory() {
    let ctx = example_context();
    let members = members(&Postgres, &ctx);
    assert_eq!(hostnames(&members), ["db1", "db2", "db3"]);
    for host in &members {
        insta::assert_snapshot!(
            snapshot_name(&host.hostname, "files"),
            rendered_files(&Postgres, &ctx, host)
        );
    }
}

#[test]
fn rendered_files_with_tls() {
    let ctx = kbz_testkit::with_tls(&example_context());
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let files = rendered_files(&Postgres, &ctx, &host);
    assert!(
        files.contains("=== /etc/patroni/tls/member.key mode 0600 postgres:postgres present=true"),
        "{files}"
    );
    let config = Postgres::config(&ctx, &host).expect("config");
    for want in [
        "  protocol: https\n  cacert: \"/etc/patroni/tls/ca.crt\"",
        "    ssl: \"on\"",
        "\"hostssl app app 192.0.2.0/24 scram-sha-256\"",
        "\"hostssl replication replicator 192.0.2.0/24 scram-sha-256\"",
        "\"hostssl postgres rewind_user 192.0.2.0/24 scram-sha-256\"",
        "\"host app app 127.0.0.1/32 scram-sha-256\"",
        "\"host all postgres 0.0.0.0/0 reject\"",
    ] {
        assert!(config.contains(want), "{want} missing:\n{config}");
    }
    assert!(!config.contains("\"host app app 192.0.2.0/24"), "{config}");
    assert!(
        !config.contains("host all all") && !config.contains("hostssl all all"),
        "{config}"
    );
    let (k, v) = kbz_testkit::PEM_FILTER;
    insta::with_settings!({ filters => vec![(k, v)] }, {
        insta::assert_snapshot!("db1__files_tls", files);
    });
}

#[test]
fn uninstall_removes_what_install_wrote_but_keeps_the_data() {
    let ctx = example_context();
    let host = ctx.inventory.host("db1").expect("db1").clone();
    let desired = Postgres.desired(&ctx, &host).expect("desired");
    let removed = Postgres.uninstall(&ctx, &host).expect("uninstall");
    for r in &desired {
        if let Resource::File { path, .. } = r {
            assert!(
                removed.contains(&Resource::absent_file(path)),
                "{path} is not removed by uninstall"
            );
        }
    }
    assert!(removed.iter().any(|r| matches!(
        r,
        Resource::Service { name, enabled: false, running: false, .. } if name == "patroni"
    )));
    for p in ["patroni", "postgresql-15", "python3-etcd"] {
        assert!(
            removed.contains(&Resource::absent_package(p)),
            "{p} stays installed"
        );
    }
    assert!(!removed
        .iter()
        .any(|r| matches!(r, Resource::Directory { .. } | Resource::Command { .. })));
}

/// `patroni --validate-config` on the config rendered for a fleet on loopback addresses
/// (127.0.0.21-23): the validator connects to the etcd hosts it is given and checks that the
/// listen ports are free, so the test must not point it at any other address.
#[test]
fn patroni_validates_the_rendered_config() {
    // postgresql-15 too: the validator checks bin_dir /usr/lib/postgresql/15/bin.
    // The validator must be the release the hosts run (Debian's 3.0.2 is not): .ci/run puts
    // it in a venv over Debian's Python and Patroni's packaged dependencies.
    let v = kbz_postgres::DEFAULT_PATRONI_VERSION;
    let patroni = std::path::PathBuf::from(format!("/opt/kbz-ci/patroni-{v}/bin/patroni"));
    assert!(
        patroni.is_file(),
        "{} is missing, so this test cannot run: `apt-get install -y python3-venv patroni \
         postgresql-15 && python3 -m venv --system-site-packages /opt/kbz-ci/patroni-{v} && \
         /opt/kbz-ci/patroni-{v}/bin/pip install --no-deps patroni=={v}` (.ci/run does)",
        patroni.display()
    );
    let found = Command::new(&patroni)
        .arg("--version")
        .output()
        .expect("run patroni --version");
    assert!(found.status.success(), "`patroni --version` failed");
    let version = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert_eq!(version, format!("patroni {v}"));
    let inv = db_inventory("127.0.0.2");
    let mut cfg = Config::default();
    cfg.cluster.name = "validate".into();
    cfg.cluster.subnet = Some("127.0.0.0/8".parse().expect("net"));
    let plain = Context::new(inv, cfg, Secrets::placeholders(Postgres.secret_names()));
    // `[security] tls` too: the etcd3 TLS client settings, ssl = on and hostssl lines.
    let tls = kbz_testkit::with_tls(&plain);
    for ctx in [plain, tls] {
        validate_all(&patroni, &version, &ctx);
    }
}

fn validate_all(patroni: &std::path::Path, version: &str, ctx: &Context) {
    // Something must answer on every etcd client address; a port already taken answers too.
    let _etcd: Vec<Option<TcpListener>> = ctx
        .inventory
        .hosts
        .iter()
        .map(|h| TcpListener::bind((h.ip, 2379)).ok())
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    for host in &ctx.inventory.hosts {
        let yaml = Postgres::config(ctx, host).expect("render");
        assert_eq!(
            yaml.contains("protocol: https"),
            ctx.config.security.tls,
            "{yaml}"
        );
        let path = dir.path().join(format!("{}.yml", host.hostname));
        std::fs::write(&path, &yaml).expect("write");
        let mut cmd = Command::new(patroni);
        cmd.arg("--validate-config").arg(&path);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PATRONI_")) {
            cmd.env_remove(k);
        }
        let out = cmd.output().expect("run patroni");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{version} rejected the config of {}:\n{stdout}{stderr}\n--- config ---\n{yaml}",
            host.hostname
        );
    }
}

/// A stub of Patroni's REST API on 127.0.0.1 that answers `/primary` and `/replica` with the
/// given status codes, for as many requests as come.
fn stub_rest(primary: u16, replica: u16) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let code = if line.contains(" /primary ") {
                primary
            } else if line.contains(" /replica ") {
                replica
            } else {
                404
            };
            let mut s = &stream;
            let _ = write!(
                s,
                "HTTP/1.0 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{addr}")
}

/// The readiness script, run for real with `sh` and `curl` against the stub: a primary is
/// ready, a replica whose WAL receiver does not stream is not (no PostgreSQL runs here).
#[test]
fn readiness_script_against_a_stub_rest_api() {
    // The readiness script uses curl.
    require_tool("curl", "curl");
    let run = |url: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(kbz_postgres::ready_script(url))
            .output()
            .expect("sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(run(&stub_rest(200, 503)), (true, "primary".to_string()));
    let (ok, said) = run(&stub_rest(503, 200));
    assert!(!ok, "{said}");
    assert_eq!(said, "replica, WAL receiver not running");
    let url = stub_rest(503, 503);
    let (ok, said) = run(&url);
    assert!(!ok);
    assert_eq!(
        said,
        format!("Patroni at {url} reports neither a primary nor a running replica")
    );
}
