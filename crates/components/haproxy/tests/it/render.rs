//! Rendered files for the example inventory: insta snapshots of every file, and HAProxy's
//! own check (`haproxy -c -f`) on the rendered haproxy.cfg.

use kbz_core::{Component, Context, Host, Role, Secrets};
use kbz_haproxy::{Haproxy, CONFIG_PATH};
use kbz_testkit::{example_context, present_files, require_tool, snapshot_name};
use std::process::Command;
use std::sync::Arc;

fn lbs(ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .with_role(Role::Lb)
        .into_iter()
        .cloned()
        .collect()
}

#[test]
fn snapshots_of_every_rendered_file() {
    let ctx = example_context(Haproxy.secret_names());
    let lbs = lbs(&ctx);
    assert_eq!(lbs.len(), 2, "the example inventory has lb1 and lb2");
    for host in &lbs {
        let files = present_files(&Haproxy, &ctx, host);
        assert_eq!(files.len(), 1);
        for (path, content) in files {
            let name = snapshot_name(&host.hostname, &path);
            insta::assert_snapshot!(name, content);
        }
    }
}

/// Runs `haproxy -c -f` on `cfg`; returns (success, combined output).
fn haproxy_check(cfg: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write cfg");
    // `haproxy -c` only parses: it does not bind, so the VIPs and the lb hosts' addresses
    // (which this machine does not have) pass without net.ipv4.ip_nonlocal_bind.
    let out = Command::new(require_tool("haproxy", "haproxy"))
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
    let ctx = example_context(Haproxy.secret_names());
    for host in lbs(&ctx) {
        for (path, content) in present_files(&Haproxy, &ctx, &host) {
            assert_eq!(path, CONFIG_PATH);
            assert_valid(&format!("{}'s haproxy.cfg", host.hostname), &content);
        }
    }
}

#[test]
fn haproxy_accepts_the_config_without_fronts_and_with_odd_secrets() {
    // No VIPs: only the stats page.
    let mut ctx = example_context(Haproxy.secret_names());
    let mut cfg = (*ctx.config).clone();
    cfg.vips.clear();
    ctx.config = Arc::new(cfg);
    let lb1 = lbs(&ctx).remove(0);
    let (_, content) = present_files(&Haproxy, &ctx, &lb1).remove(0);
    assert!(!content.contains("frontend"), "{content}");
    assert_valid("a config without fronts", &content);

    // Secrets with characters haproxy.cfg must escape still parse.
    let mut ctx = example_context(Haproxy.secret_names());
    let mut s = Secrets::placeholders(Haproxy.secret_names());
    s.set("redis_password", kbz_core::Secret::new("a b#c\\d\"e'f"));
    s.set("haproxy_stats_password", kbz_core::Secret::new("x y#z"));
    ctx.secrets = Arc::new(s);
    let (_, content) = present_files(&Haproxy, &ctx, &lb1).remove(0);
    assert_valid("a config with escaped secrets", &content);
}

#[test]
fn haproxy_check_catches_errors() {
    // The validator must really validate: a broken file fails.
    let (ok, text) = haproxy_check("backend b\n    tcp-check send AUTH secret\\r\\n\n");
    assert!(!ok, "haproxy -c accepted a broken file:\n{text}");
}
