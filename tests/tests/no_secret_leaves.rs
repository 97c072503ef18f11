//! No secret leaves a kbz binary: every subcommand of every binary in `bins/` (found from
//! the workspace and each binary's clap `--help` tree, so new binaries and subcommands are
//! covered without editing this file) runs in text, `--json` and `-vv`, as a plan, a real
//! run against hosts that refuse connections, and a rollback of a seeded journal, with a
//! real state directory and a JSON webhook receiver on loopback. Then stdout, stderr, every
//! log file, the journal and every notification body are searched for every secret and
//! every value derived from one (fragments, hashes, hex, base64, escaped forms).

use kbz_core::redact::Redactor;
use kbz_core::Secrets;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn root() -> PathBuf {
    kbz_testkit::workspace_root()
}

/// Every binary of the workspace: the package names under bins/ (each package's binary is
/// named after it).
fn binaries() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root().join("bins"))
        .expect("bins/")
        .flatten()
    {
        let manifest = e.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .expect("package name");
        out.push(name);
    }
    out.sort();
    out
}

/// The subcommand names listed under `Commands:` in a clap help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in help.lines() {
        if l.trim_end() == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if !l.starts_with("  ") {
                break;
            }
            if let Some(name) = l.split_whitespace().next() {
                if name != "help" {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

/// Placeholder values for a command's required positional arguments (`<CODE>` in `Usage:`).
fn positionals(help: &str) -> Vec<String> {
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default();
    usage
        .split_whitespace()
        .filter(|w| w.starts_with('<') && w.ends_with('>'))
        .map(|w| match w {
            "<CODE>" => kbz_errors::Code::E001.to_string(),
            _ => "x".to_string(),
        })
        .collect()
}

/// Every leaf command of a binary, as argument lists, with its help text.
fn leaves(bin: &Path, prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let o = Command::new(bin)
        .args(&prefix)
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let subs = subcommands(&help);
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default()
        .to_string();
    // A command whose own arguments are optional runs without a subcommand too.
    if subs.is_empty() || usage.contains("[COMMAND]") {
        let mut args = prefix.clone();
        args.extend(positionals(&help));
        out.push((args, help.clone()));
    }
    for s in subs {
        let mut p = prefix.clone();
        p.push(s);
        leaves(bin, p, out);
    }
}

/// Values for options that would otherwise touch the machine or run forever: `--root`
/// (a directory under the test's), `--listen` (a free loopback port), and file outputs
/// (`--prometheus`), which are searched too. Returns the files to search.
fn fill_options(cmd: &mut Command, help: &str, dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if help.contains("--root <") {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("root");
        cmd.arg("--root").arg(&root);
    }
    if help.contains("--listen <") {
        cmd.args(["--listen", &format!("127.0.0.1:{}", refused_port())]);
    }
    if help.contains("--prometheus <") {
        let f = dir.join("metrics.prom");
        cmd.arg("--prometheus").arg(&f);
        files.push(f);
    }
    files
}

/// Runs a command to its end (60 s at most). A server (`--listen`) is asked for
/// `/metrics` once it answers, then stopped; its answer is returned as well.
fn run(mut cmd: Command, help: &str, shown: &str) -> (String, String, Option<String>) {
    use std::process::Stdio;
    let listen = cmd
        .get_args()
        .skip_while(|a| *a != "--listen")
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut served = None;
    loop {
        if let Some(addr) = listen.as_deref().filter(|_| help.contains("--listen <")) {
            if served.is_none() {
                if let Ok(mut c) = std::net::TcpStream::connect(addr) {
                    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                    let _ = c.write_all(
                        format!(
                            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    let mut b = String::new();
                    let _ = c.read_to_string(&mut b);
                    served = Some(b);
                    let _ = child.kill();
                }
            }
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{shown}: still running after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.wait();
    (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        served,
    )
}

/// Every file under `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A JSON webhook on loopback that answers 200 and keeps every request.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut need = None;
                while let Ok(n) = conn.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if need.is_none() {
                        if let Some(h) = text.find("\r\n\r\n") {
                            let len = text[..h]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            need = Some(h + 4 + len);
                        }
                    }
                    if need.is_some_and(|n| buf.len() >= n) {
                        break;
                    }
                }
                s.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { port, seen }
    }
}

/// A loopback port that refuses connections (bound, then closed).
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The example fleet on loopback addresses whose SSH port refuses connections, with a
/// webhook target that receives every level.
fn write_inputs(dir: &Path, hook_port: u16) {
    let port = refused_port();
    std::fs::write(
        dir.join("servers.tsv"),
        kbz_tests::loopback_inventory(port, |_| None),
    )
    .expect("inventory");
    let cfg = kbz_tests::loopback_config();
    // TLS on: the CA and member keys are secrets the search covers too.
    let cfg = format!(
        "{cfg}\n[security]\ntls = true\n\n[[notify]]\nname = \"hook\"\nurl = \"json://127.0.0.1:{hook_port}/hook\"\n\
         min_level = \"debug\"\ntimeout_secs = 5\n\
         [notify.options]\n\"header.Authorization\" = \"Bearer {{secret:hook_token}}\"\n"
    );
    std::fs::write(dir.join("kbz.toml"), cfg).expect("config");
}

/// A failed run's journal whose undo restores a file, for `rollback` to replay.
fn seed_journal(state: &Path) {
    let journal = serde_json::json!({
        "run_id": "seeded",
        "status": "failed",
        "entries": [{
            "host": "db1",
            "component": "redis",
            "did": "write /etc/redis/kbz.conf (10 bytes, mode 0640, owner root:redis)",
            "undo": [{"op": "remove_file", "path": "/etc/redis/kbz.conf"}]
        }]
    });
    std::fs::write(state.join("journal.json"), journal.to_string()).expect("journal");
}

#[test]
fn no_secret_in_any_output_of_any_binary() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let hook = Receiver::start();
    write_inputs(dir, hook.port);
    let state = dir.join(".kbz");
    std::fs::create_dir_all(&state).expect("state dir");
    // A user-provided token (with characters that get escaped) next to the generated ones.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(state.join("secrets.toml"))
            .expect("secrets");
        f.write_all(b"hook_token = \"tok\\\"en/with spaces+5cQ\"\n")
            .expect("write");
    }

    // The cluster CA and member keys, made the way a real run makes them, so every run of
    // the binaries uses these (and the search knows them).
    let pki = {
        let text = std::fs::read_to_string(dir.join("servers.tsv")).expect("inventory");
        let inv = kbz_core::Inventory::parse("servers.tsv", text.as_bytes()).expect("inventory");
        let cfg = std::fs::read_to_string(dir.join("kbz.toml")).expect("config");
        let cfg = kbz_core::Config::parse("kbz.toml", &cfg).expect("config");
        kbz_core::pki::Pki::load_or_create(
            &state.join("tls"),
            "example",
            &kbz_core::pki::Member::of_inventory(&inv, &cfg),
            true,
        )
        .expect("CA")
    };

    let names = binaries();
    assert!(names.iter().any(|n| n == "kbz-install"), "{names:?}");
    let bins = kbz_tests::built(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let inv = dir.join("servers.tsv");
    let inv = inv.to_str().expect("utf-8 path");
    let state_s = state.to_str().expect("utf-8 path");

    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut covered = BTreeSet::new();
    for (name, bin) in names.iter().zip(&bins) {
        let mut cmds = Vec::new();
        leaves(bin, Vec::new(), &mut cmds);
        assert!(!cmds.is_empty(), "{name}: no command found");
        for (args, help) in cmds {
            // Every way the command can run: as it is, as a plan, and for real.
            let mut variants: Vec<Vec<&str>> = vec![vec![]];
            if help.contains("--dry-run") {
                variants.push(vec!["--dry-run", "--offline"]);
                variants.push(vec!["--dry-run"]);
            }
            if help.contains("--yes") {
                variants.push(vec!["--yes"]);
            }
            for v in variants {
                for style in [&[][..], &["--json"][..], &["-vv"][..]] {
                    if args.first().map(String::as_str) == Some("rollback") {
                        seed_journal(&state);
                    }
                    let mut cmd = Command::new(bin);
                    cmd.args(&args)
                        .args(["--inventory", inv, "--state-dir", state_s])
                        .args(&v)
                        .args(style)
                        .current_dir(dir)
                        .env_remove("RUST_LOG")
                        .env_remove("SSH_AUTH_SOCK")
                        .stdin(std::process::Stdio::null());
                    let shown = format!(
                        "{name} {} {} {}",
                        args.join(" "),
                        v.join(" "),
                        style.join(" ")
                    );
                    let files = fill_options(&mut cmd, &help, dir);
                    let (out, err, served) = run(cmd, &help, &shown);
                    assert!(!err.contains("panicked"), "{shown}: {err}");
                    outputs.push((format!("{shown} (stdout)"), out));
                    if let Some(body) = served {
                        outputs.push((format!("{shown} (served)"), body));
                    }
                    for f in files {
                        if let Ok(text) = std::fs::read_to_string(&f) {
                            outputs.push((format!("{shown} ({})", f.display()), text));
                        }
                    }
                    outputs.push((format!("{shown} (stderr)"), err));
                    covered.insert(format!("{name} {}", args.join(" ")));
                }
            }
        }
    }

    // The secrets as the runs generated and kept them.
    let secrets = Secrets::load(&state.join("secrets.toml")).expect("secrets file");
    let count = secrets.values().count();
    assert!(count >= 8, "only {count} secrets generated");
    let mut redactor = Redactor::from_secrets(&secrets);
    redactor.extend(pki.patterns());
    let file = std::fs::read_to_string(state.join("secrets.toml")).expect("secrets file");
    assert!(redactor.leaks(&file), "the search would find nothing");
    let key = std::fs::read_to_string(state.join("tls/db1.key")).expect("member key");
    assert!(
        redactor.leaks(&key),
        "the search would not find the member keys"
    );

    // The plan really holds the secrets' files (masked): the search is not vacuous.
    let plan = outputs
        .iter()
        .find(|(n, _)| n.starts_with("kbz-install  --dry-run --offline  (stdout)"))
        .map(|(_, t)| t.clone())
        .expect("the text plan");
    assert!(plan.contains("masterauth \"****\""), "{plan}");
    assert!(plan.contains("auth_pass ****"), "{plan}");
    assert!(plan.contains("/etc/etcd/kbz-tls/member.key"), "{plan}");

    // Every file the runs left: logs, journal, health state, units under --root.
    let mut left = Vec::new();
    walk(&state, &mut left);
    walk(&dir.join("root"), &mut left);
    assert!(
        left.iter().any(|p| p.starts_with(state.join("logs"))),
        "no log written: {left:?}"
    );
    for p in left {
        // The secrets' own files (0600, checked above) hold them by design.
        let key_file =
            p.starts_with(state.join("tls")) && p.extension().is_some_and(|e| e == "key");
        if p.ends_with("secrets.toml") || key_file {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&p).expect("read")).into_owned();
        outputs.push((p.display().to_string(), text));
    }
    let bodies = hook.seen.lock().expect("lock").clone();
    assert!(
        bodies.iter().any(|b| b.contains("failed")),
        "no failure notification received: {bodies:?}"
    );
    for (i, b) in bodies.into_iter().enumerate() {
        // The Authorization header carries the hook token by design: only the body counts.
        let body = b
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string();
        outputs.push((format!("notification {i}"), body));
    }

    let mut leaks = Vec::new();
    for (what, text) in &outputs {
        if redactor.leaks(text) {
            let shown: Vec<&str> = redactor
                .patterns()
                .iter()
                .filter(|p| text.contains(p.as_str()))
                .map(|p| &p[..p.len().min(3)])
                .collect();
            leaks.push(format!("{what}: forms starting {shown:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets leaked ({} commands covered: {covered:?}):\n{}",
        covered.len(),
        leaks.join("\n")
    );
    assert!(covered.len() >= 6, "{covered:?}");
}
