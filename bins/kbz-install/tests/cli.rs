//! The kbz-install binary as a user runs it: the bundled dry-run, bad input with E-codes and
//! exit codes, `explain`, `notify test` against a real HTTP receiver on loopback, and the
//! menu in a real terminal (`menu`: tmux).

#[path = "cli/menu.rs"]
mod menu;

use std::path::Path;
use std::process::{Command, Output};

fn kbz(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbz-install"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kbz-install")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bundled_dry_run_prints_the_plan_and_the_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = kbz(&["--dry-run"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("bundled example inventory"), "{err}");
    assert!(out.contains("== db1 · module 1 base"), "{out}");
    let last = out.lines().last().unwrap_or("");
    assert!(
        last.ends_with("operations would change on 14 hosts"),
        "{last}"
    );
    assert!(
        !dir.path().join(".kbz").exists(),
        "a bundled dry-run must write nothing"
    );
}

#[test]
fn invalid_inventory_reports_every_problem_with_codes_and_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("servers.tsv");
    std::fs::write(&inv, "hostname\tip\troles\nweb1\t10.0.0.1\tlb\nweb1\t10.0.0.2\tlb\nweb3\t10.0.0.300\tlb\nweb4 10.0.0.4 lb\n")
        .expect("write");
    let o = kbz(&["validate", "--inventory", "servers.tsv"], dir.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(
        err.contains("E004") && err.contains("servers.tsv:3"),
        "{err}"
    );
    assert!(
        err.contains("E005") && err.contains("servers.tsv:4"),
        "{err}"
    );
    assert!(
        err.contains("E002") && err.contains("servers.tsv:5"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_inventory_is_e001_and_json_errors_are_machine_readable() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = kbz(
        &["--inventory", "nope.tsv", "--dry-run", "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(64));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["errors"][0]["code"], "E001");
}

#[test]
fn explain_prints_fixes_and_rejects_unknown_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = kbz(&["explain", "E014"], dir.path());
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains("E014") && out.contains("1. "), "{out}");
    let o = kbz(&["explain", "E999"], dir.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(64));
    assert!(err.contains("E001 to E068"), "{err}");
}

#[test]
fn every_command_that_prints_results_speaks_json() {
    let dir = tempfile::tempdir().expect("tmp");
    for (args, key) in [
        (&["explain", "E014", "--json"][..], "explanation"),
        (&["validate", "--json"][..], "valid"),
        (&["notify", "test", "--json"][..], "targets"),
        (&["--dry-run", "--json"][..], "plan"),
    ] {
        let o = kbz(args, dir.path());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert!(v.get(key).is_some(), "{args:?}: no `{key}` in {v}");
    }
    let o = kbz(&["explain", "E014", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["code"], "E014");
    // The menu is interactive: --json is a usage error, not a screen in a pipe.
    let o = kbz(&["menu", "--json"], dir.path());
    assert_eq!(o.status.code(), Some(64));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["errors"][0]["code"], "E010");
}

#[test]
fn real_run_without_yes_off_a_terminal_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("servers.tsv"), "n1\t127.0.0.1\tlb\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_kbz-install"))
        .args(["--inventory", "servers.tsv"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("E010") && err.contains("--yes"), "{err}");
}

#[test]
fn notify_test_reports_each_target_and_fails_if_one_fails() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver");
    let port = server.server_addr().to_ip().expect("ip").port();
    let receiver = std::thread::spawn(move || {
        let mut req = server.recv().expect("one request");
        let mut body = String::new();
        req.as_reader().read_to_string(&mut body).expect("body");
        let path = req.url().to_string();
        req.respond(tiny_http::Response::empty(200))
            .expect("respond");
        (path, body)
    });
    // A closed port for the failing target: bind, read the port, drop the listener.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("servers.tsv"), "n1\t127.0.0.1\tlb\n").expect("write");
    std::fs::write(
        dir.path().join("kbz.toml"),
        format!(
            "[[notify]]\nname = \"ops-hook\"\nurl = \"json://127.0.0.1:{port}/hook\"\n\n[[notify]]\nname = \"dead\"\nurl = \"json://127.0.0.1:{closed}/hook\"\ntimeout_secs = 2\n"
        ),
    )
    .expect("write");
    let o = kbz(
        &["notify", "test", "--inventory", "servers.tsv"],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("✓ ops-hook")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("✗ dead")), "{out}");
    let (path, body) = receiver.join().expect("receiver");
    assert_eq!(path, "/hook");
    assert!(body.contains("test"), "{body}");
}

#[test]
fn no_secret_reaches_the_log_file_or_the_terminal() {
    // Secrets flow into rendered configs (haproxy.cfg, patroni.yml, Redis ACLs); the plan,
    // the terminal and the JSON log must show none of them, even at -vv.
    let dir = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for f in ["servers.tsv", "kbz.toml"] {
        std::fs::copy(root.join("examples").join(f), dir.path().join(f)).expect("copy example");
    }
    let names = [
        "keepalived_auth_pass",
        "haproxy_stats_password",
        "redis_password",
        "redis_sentinel_password",
        "patroni_rest_password",
        "postgres_superuser_password",
        "postgres_replication_password",
        "postgres_rewind_password",
        "postgres_app_password",
    ];
    let values: Vec<String> = names
        .iter()
        .map(|n| format!("S3cr3t{}Zq9x", n.replace('_', "")))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let state = dir.path().join(".kbz");
    kbz_testkit::write_secrets(&state, &pairs);
    let o = kbz(
        &[
            "--inventory",
            "servers.tsv",
            "--offline",
            "--dry-run",
            "-vv",
        ],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains("haproxy.cfg"),
        "the plan renders configs that hold secrets: {out}"
    );
    let log = std::fs::read_to_string(state.join("logs/kbz-install.jsonl")).expect("log file");
    assert!(!log.is_empty());
    for v in &values {
        assert!(!out.contains(v.as_str()), "a secret in the plan output");
        assert!(!err.contains(v.as_str()), "a secret on stderr");
        assert!(!log.contains(v.as_str()), "a secret in the log file");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("logs/kbz-install.jsonl"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the log file must be private");
}

#[test]
fn help_shows_the_shared_exit_code_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = kbz(&["--help"], dir.path());
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("EXIT CODES (shared by every kbz binary)"),
        "{out}"
    );
    // The one shared table, exactly as kbz_cli::exit holds it (and the README shows it).
    assert!(out.contains(&kbz_cli::exit::help("")), "{out}");
    for (code, meaning) in [
        (64, "invalid input"),
        (3, "hosts unreachable"),
        (4, "rollback incomplete"),
    ] {
        assert!(
            out.contains(&format!("  {code}  ")) && out.contains(meaning),
            "{out}"
        );
    }
}

#[test]
fn offline_dry_run_plans_module_10_for_both_distributions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(root.join("examples/kbz.toml")).expect("example");
    assert!(
        example.contains("flavor = \"k3s\""),
        "the example shows the choice"
    );
    for (flavor, expect) in [
        (
            "k3s",
            ["/etc/rancher/k3s/config.yaml", "fetch k3s v1.34.2+k3s1"],
        ),
        (
            "kubeadm",
            [
                "/etc/kubernetes/kbz/kubeadm.yaml",
                "fetch kubernetes-apt-key v1.31",
            ],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::copy(
            root.join("examples/servers.tsv"),
            dir.path().join("servers.tsv"),
        )
        .expect("inventory");
        std::fs::write(
            dir.path().join("kbz.toml"),
            example.replace("flavor = \"k3s\"", &format!("flavor = \"{flavor}\"")),
        )
        .expect("config");
        let o = kbz(
            &[
                "--inventory",
                "servers.tsv",
                "--config",
                "kbz.toml",
                "--offline",
                "--dry-run",
            ],
            dir.path(),
        );
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{flavor}: {err}");
        for host in ["k8s-m1", "k8s-m3", "k8s-w1"] {
            assert!(
                out.contains(&format!("== {host} · module 10 kubernetes")),
                "{flavor}: {host} not planned in module 10:\n{out}"
            );
        }
        for e in expect {
            assert!(out.contains(e), "{flavor}: `{e}` not in the plan");
        }
    }
}

#[test]
fn every_kbz_install_command_the_docs_and_the_error_catalogue_name_exists() {
    kbz_testkit::docs::check_subcommands(
        std::path::Path::new(env!("CARGO_BIN_EXE_kbz-install")),
        "kbz-install",
    );
}

/// A fleet directory (the example inventory and config, with `[artifacts.patroni]` pinned
/// to `pinned`'s bytes) and its download cache holding: that artifact, an old unpinned one,
/// one whose bytes no longer match its sha256, and a partial download.
fn cache_fleet(pinned: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let sha = kbz_core::shell::sha256_hex;
    let dir = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::copy(root.join("servers.tsv"), dir.path().join("servers.tsv")).expect("copy");
    let mut config = std::fs::read_to_string(root.join("kbz.toml")).expect("config");
    config.push_str(&format!(
        "\n[artifacts.patroni]\nversion = \"9.9.9\"\nsha256 = \"{}\"\n",
        sha(pinned)
    ));
    std::fs::write(dir.path().join("kbz.toml"), config).expect("write");
    let cache = dir.path().join(".kbz/cache");
    for (sub, file, bytes) in [
        (sha(pinned), "patroni-9.9.9-py3-none-any.whl", pinned),
        (sha(b"old release"), "tool-1.0", b"old release".as_slice()),
        (sha(b"original"), "tool-2.0", b"bit rot".as_slice()),
        (sha(pinned), ".part-x7Yz", b"half a download".as_slice()),
    ] {
        std::fs::create_dir_all(cache.join(&sub)).expect("mkdir");
        std::fs::write(cache.join(&sub).join(file), bytes).expect("write");
    }
    (dir, cache)
}

#[test]
fn cache_list_names_pins_sizes_and_damaged_files() {
    let (dir, _) = cache_fleet(b"the pinned wheel");
    let o = kbz(
        &["cache", "list", "--inventory", "servers.tsv", "--json"],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = v["artifacts"].as_array().expect("artifacts");
    let mut got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["file"].as_str().unwrap_or("").to_string(),
                r["size"].as_u64().unwrap_or(0),
                r["intact"].as_bool(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "patroni".into(),
                "patroni-9.9.9-py3-none-any.whl".into(),
                16,
                Some(true)
            ),
            ("unpinned".into(), "tool-1.0".into(), 11, Some(true)),
            ("unpinned".into(), "tool-2.0".into(), 7, Some(false)),
        ]
    );
    assert_eq!(v["total_bytes"], 34);
    assert!(rows
        .iter()
        .all(|r| r["modified"].as_str().is_some_and(|m| m.ends_with('Z'))));

    let o = kbz(&["cache", "list", "--inventory", "servers.tsv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let header = out.lines().nth(1).unwrap_or("");
    assert!(header.starts_with("NAME      FILE"), "{out}");
    assert!(out.contains("NO: damaged"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap_or("")
            .starts_with("total: 34 B in 3 artifact(s); 1 damaged"),
        "{out}"
    );
}

#[test]
fn cache_prune_keeps_pinned_artifacts_and_all_empties_it() {
    let (dir, cache) = cache_fleet(b"the pinned wheel");
    let sha = kbz_core::shell::sha256_hex;
    let pinned = cache
        .join(sha(b"the pinned wheel"))
        .join("patroni-9.9.9-py3-none-any.whl");
    let args = ["cache", "prune", "--inventory", "servers.tsv", "--json"];

    let o = kbz(&[&args[..], &["--dry-run"]].concat(), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["removed"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(
        cache.join(sha(b"old release")).exists(),
        "a dry run removes nothing"
    );

    let o = kbz(&args, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["bytes_freed"], 11 + 7 + 15, "{v}");
    let mut kinds: Vec<_> = v["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or("").to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["leftover", "unpinned", "unpinned"]);
    assert!(pinned.is_file(), "the pinned artifact must stay");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from(sha(b"the pinned wheel"))]);

    let o = kbz(
        &["cache", "prune", "--all", "--inventory", "servers.tsv"],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("removed  unpinned  16 B"), "{out}");
    assert!(
        out.ends_with("freed 16 B (16 bytes) in 1 file(s)\n"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(&cache).expect("ls").count(), 0);
}

#[test]
fn a_cache_that_does_not_exist_is_empty() {
    let (dir, cache) = cache_fleet(b"x");
    std::fs::remove_dir_all(&cache).expect("rm");
    let o = kbz(
        &["cache", "list", "--inventory", "servers.tsv", "--json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["artifacts"], serde_json::json!([]));
    assert_eq!(v["total_bytes"], 0);
    let o = kbz(
        &["cache", "prune", "--inventory", "servers.tsv"],
        dir.path(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(out, "freed 0 B (0 bytes) in 0 file(s)\n");
    assert!(!cache.exists(), "prune must not create the cache");
}
