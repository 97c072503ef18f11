//! The kbz-health binary as an operator or a cron job runs it: exit codes and `--help`,
//! bad input with E-codes, JSON shape, the Prometheus textfile, `serve` scraped by a real
//! HTTP client on loopback, the systemd timer under a temporary root, and no secret printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn health(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbz-health"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run kbz-health")
}

/// Three hosts on loopback addresses whose SSH port is closed: every host is unreachable.
fn unreachable_fleet(dir: &Path) {
    kbz_testkit::unreachable_fleet(
        dir,
        "",
        &[
            ("haproxy_stats_password", "S3cr3tStatsZq9x"),
            ("redis_password", "S3cr3tRedisZq9x"),
        ],
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = health(&["--help"], dir.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("EXIT CODES (shared by every kbz binary)"),
        "{out}"
    );
    // The one shared table, exactly as kbz_cli::exit holds it (and the README shows it).
    assert!(out.contains(&kbz_cli::exit::help("")), "{out}");
    assert!(
        out.contains("0 healthy, 1 degraded") && out.contains("2 down"),
        "{out}"
    );
}

#[test]
fn bad_input_is_e010_with_exit_64_never_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = health(&["--json"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["errors"][0]["code"], "E010");

    unreachable_fleet(dir.path());
    let o = health(
        &["--inventory", "servers.tsv", "--component", "postgrse"],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(
        err.contains("E010") && err.contains("did you mean `postgres`"),
        "{err}"
    );

    let o = health(&["--inventory", "missing.tsv"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("E001"));
}

#[test]
fn an_unreachable_fleet_exits_3_with_a_json_report_and_no_secret() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path());
    let o = health(
        &[
            "--inventory",
            "servers.tsv",
            "--json",
            "--prometheus",
            "out/kbz.prom",
            "-vv",
        ],
        dir.path(),
    );
    // The textfile's directory does not exist: the run says so with E022.
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    let o = health(
        &[
            "--inventory",
            "servers.tsv",
            "--json",
            "--prometheus",
            "out/kbz.prom",
            "-vv",
        ],
        dir.path(),
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(3), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(v["status"], "down");
    assert_eq!(v["round_trips"]["total"], 0);
    assert_eq!(v["unreachable"].as_array().map(Vec::len), Some(3));
    let first = &v["checks"][0];
    for key in [
        "host",
        "component",
        "check",
        "status",
        "detail",
        "code",
        "fix",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    let prom = std::fs::read_to_string(dir.path().join("out/kbz.prom")).expect("textfile");
    assert!(
        prom.contains("kbz_health_check{component=\"ssh\",host=\"n1\",check=\"reachable\"} 0"),
        "{prom}"
    );
    let log = std::fs::read_to_string(dir.path().join(".kbz/logs/kbz-health.jsonl")).expect("log");
    let state = std::fs::read_to_string(dir.path().join(".kbz/health-state.json")).expect("state");
    assert!(state.contains("\"status\":\"down\""), "{state}");
    for secret in ["S3cr3tStatsZq9x", "S3cr3tRedisZq9x"] {
        for (what, text) in [
            ("stdout", &out),
            ("stderr", &err),
            ("log", &log),
            ("metrics", &prom),
            ("state", &state),
        ] {
            assert!(!text.contains(secret), "a secret in {what}");
        }
    }

    // The table on a terminal-less stdout, same exit code.
    let o = health(
        &["--inventory", "servers.tsv", "--component", "etcd"],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3));
    assert!(out.starts_with("status"), "{out}");
    assert!(
        out.contains("DOWN") && out.contains("quorum") && out.contains("E036"),
        "{out}"
    );
    assert!(
        !out.contains("redis"),
        "--component etcd shows etcd only: {out}"
    );
}

#[tokio::test]
async fn serve_answers_metrics_to_a_real_http_client() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbz-health"))
        .args([
            "--inventory",
            "servers.tsv",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().expect("stderr");
    let child = Kill(child);
    let mut line = String::new();
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("kbz-health: serving ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    let resp = reqwest::get(&url).await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.contains("# TYPE kbz_health_check gauge"), "{body}");
    assert!(
        body.contains("kbz_health_status{cluster=\"loop\"} 2"),
        "{body}"
    );
    let root = url.trim_end_matches("/metrics");
    assert_eq!(
        reqwest::get(format!("{root}/x"))
            .await
            .expect("404")
            .status(),
        404
    );
    drop(child);
}

#[test]
fn timer_install_and_remove_under_a_temporary_root() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path());
    let root = dir.path().join("root");
    let root_s = root.display().to_string();
    let o = health(
        &[
            "--inventory",
            "servers.tsv",
            "--prometheus",
            "/var/lib/node_exporter/kbz.prom",
            "timer",
            "install",
            "--root",
            &root_s,
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let service = std::fs::read_to_string(root.join("etc/systemd/system/kbz-health.service"))
        .expect("service");
    let inv = dir.path().join("servers.tsv").canonicalize().expect("abs");
    assert!(
        service.contains(&format!("--inventory {}", inv.display())),
        "{service}"
    );
    assert!(
        service.contains("--prometheus /var/lib/node_exporter/kbz.prom"),
        "{service}"
    );
    assert!(root.join("etc/systemd/system/kbz-health.timer").exists());
    let o = health(
        &["timer", "remove", "--root", &root_s, "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json");
    assert_eq!(v["removed"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(!root.join("etc/systemd/system/kbz-health.service").exists());
    assert!(!root.join("etc/systemd/system/kbz-health.timer").exists());
}

#[test]
fn a_status_change_notifies_once_and_a_repeat_run_stays_quiet() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver");
    let port = server.server_addr().to_ip().expect("ip").port();
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path());
    let mut cfg = std::fs::read_to_string(dir.path().join("kbz.toml")).expect("config");
    cfg.push_str(&format!(
        "\n[[notify]]\nname = \"hook\"\nurl = \"json://127.0.0.1:{port}/hook\"\nmin_level = \"info\"\ntimeout_secs = 5\n"
    ));
    std::fs::write(dir.path().join("kbz.toml"), cfg).expect("config");
    let receiver = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        while let Ok(Some(mut req)) = server.recv_timeout(std::time::Duration::from_secs(4)) {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).expect("body");
            req.respond(tiny_http::Response::empty(200))
                .expect("respond");
            bodies.push(body);
        }
        bodies
    });
    for _ in 0..3 {
        let o = health(&["--inventory", "servers.tsv"], dir.path());
        assert_eq!(o.status.code(), Some(3));
    }
    let bodies = receiver.join().expect("receiver");
    assert_eq!(
        bodies.len(),
        1,
        "one alert for the change, none for the repeats: {bodies:?}"
    );
    assert!(bodies[0].contains("loop health"), "{}", bodies[0]);
    assert!(!bodies[0].contains("S3cr3t"), "{}", bodies[0]);
}

#[test]
fn a_usage_error_is_64_not_down() {
    let dir = tempfile::tempdir().expect("tmp");
    for args in [
        &["--bogus"][..],
        &["serve", "--listen"][..],
        &["timer"][..],
        &["--component"][..],
    ] {
        let o = health(args, dir.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains("Usage") || err.contains("--help"),
            "{args:?}: {err}"
        );
    }
    let o = health(&["--version"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("kbz-health "));
}

/// Runs kbz-health with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(args: &[&str], dir: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kbz-health"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kbz-health");
    drop(c.stdout.take());
    c.wait_with_output().expect("wait")
}

#[test]
fn a_closed_pipe_on_stdout_is_no_panic_and_keeps_the_exit_code() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path());
    for (args, code) in [
        (&["--help"][..], 0),
        (&["--inventory", "servers.tsv"][..], 3),
        (&["--inventory", "servers.tsv", "--json"][..], 3),
        (&["--json"][..], 64),
    ] {
        let o = with_closed_stdout(args, dir.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    }
    // What an operator types: `kbz-health ... | head -1`.
    let o = Command::new("bash")
        .arg("-c")
        .arg("\"$0\" --inventory servers.tsv | head -1 >/dev/null; echo \"rc=${PIPESTATUS[0]}\"")
        .arg(env!("CARGO_BIN_EXE_kbz-health"))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.contains("rc=3"), "{out}{err}");
}

#[test]
fn every_kbz_health_command_the_docs_and_the_error_catalogue_name_exists() {
    kbz_testkit::docs::check_subcommands(
        std::path::Path::new(env!("CARGO_BIN_EXE_kbz-health")),
        "kbz-health",
    );
}
