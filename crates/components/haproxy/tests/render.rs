//! Rendered files for the example inventory: insta snapshots of every file, and HAProxy's
//! own check (`haproxy -c -f`) on the rendered haproxy.cfg.

use kbz_core::{Component, Config, Context, Host, Inventory, Resource, Role, Secrets};
use kbz_haproxy::{Haproxy, CONFIG_PATH};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn example() -> Context {
    let inv = Inventory::load(&root().join("examples/servers.tsv")).expect("example inventory");
    let cfg = Config::load(&root().join("examples/kbz.toml")).expect("example config");
    Context::new(inv, cfg, Secrets::placeholders(Haproxy.secret_names()))
}

/// Every present file of the component on one host: (path, content).
fn files(ctx: &Context, host: &Host) -> Vec<(String, String)> {
    Haproxy
        .desired(ctx, host)
        .expect("desired")
        .into_iter()
        .filter_map(|r| match r {
            Resource::File {
                path,
                content,
                present: true,
                ..
            } => Some((path, String::from_utf8(content).expect("utf8"))),
            _ => None,
        })
        .collect()
}

fn lbs(ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .with_role(Role::Lb)
        .into_iter()
        .cloned()
        .collect()
}

#[test]
fn snapshots_of_every_rendered_file() {
    let ctx = example();
    let lbs = lbs(&ctx);
    assert_eq!(lbs.len(), 2, "the example inventory has lb1 and lb2");
    for host in &lbs {
        let files = files(&ctx, host);
        assert_eq!(files.len(), 1);
        for (path, content) in files {
            let name = format!(
                "{}__{}",
                host.hostname,
                path.trim_start_matches('/').replace('/', "_")
            );
            insta::assert_snapshot!(name, content);
        }
    }
}

fn haproxy_binary() -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"] {
        let p = Path::new(dir).join("haproxy");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "haproxy is not installed, so the rendered haproxy.cfg cannot be validated: install it \
         with `apt-get install -y haproxy` (.ci/run does)"
    );
}

/// Runs `haproxy -c -f` on `cfg`; returns (success, combined output).
fn haproxy_check(cfg: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write cfg");
    // `haproxy -c` only parses: it does not bind, so the VIPs and the lb hosts' addresses
    // (which this machine does not have) pass without net.ipv4.ip_nonlocal_bind.
    let out = Command::new(haproxy_binary())
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run haproxy -c");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_valid(what: &str, cfg: &str) {
    let (ok, text) = haproxy_check(cfg);
    assert!(
        ok && !text.contains("[WARNING]") && !text.contains("[ALERT]"),
        "haproxy -c rejected or warned about {what}:\n{text}\n{cfg}"
    );
}

#[test]
fn haproxy_accepts_the_rendered_config() {
    let ctx = example();
    for host in lbs(&ctx) {
        for (path, content) in files(&ctx, &host) {
            assert_eq!(path, CONFIG_PATH);
            assert_valid(&format!("{}'s haproxy.cfg", host.hostname), &content);
        }
    }
}

#[test]
fn haproxy_accepts_the_config_without_fronts_and_with_odd_secrets() {
    // No VIPs: only the stats page.
    let mut ctx = example();
    let mut cfg = (*ctx.config).clone();
    cfg.vips.clear();
    ctx.config = Arc::new(cfg);
    let lb1 = lbs(&ctx).remove(0);
    let (_, content) = files(&ctx, &lb1).remove(0);
    assert!(!content.contains("frontend"), "{content}");
    assert_valid("a config without fronts", &content);

    // Secrets with characters haproxy.cfg must escape still parse.
    let mut ctx = example();
    let mut s = Secrets::placeholders(Haproxy.secret_names());
    s.set("redis_password", kbz_core::Secret::new("a b#c\\d\"e'f"));
    s.set("haproxy_stats_password", kbz_core::Secret::new("x y#z"));
    ctx.secrets = Arc::new(s);
    let (_, content) = files(&ctx, &lb1).remove(0);
    assert_valid("a config with escaped secrets", &content);
}

#[test]
fn haproxy_check_catches_errors() {
    // The validator must really validate: a broken file fails.
    let (ok, text) = haproxy_check("backend b\n    tcp-check send AUTH secret\\r\\n\n");
    assert!(!ok, "haproxy -c accepted a broken file:\n{text}");
}
