//! Rendered files for the example inventory: insta snapshots of every file, keepalived's own
//! config test (`keepalived -t -f`) on the rendered keepalived.conf (2 and 3 lb hosts), and
//! the `chk_peers` track script run for real in a network namespace of its own.

use kbz_core::Context;
use kbz_core::{Component, Host, Role};
use kbz_keepalived::{Keepalived, CHECK_SCRIPT_PATH, CONFIG_PATH, PEERS_SCRIPT_PATH};
use kbz_testkit::{example_context, present_files, require_tool, snapshot_name};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn snapshots_of_every_rendered_file() {
    let ctx = example_context(Keepalived.secret_names());
    let lbs: Vec<Host> = ctx
        .inventory
        .with_role(Role::Lb)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(lbs.len(), 2, "the example inventory has lb1 and lb2");
    for host in &lbs {
        let files = present_files(&Keepalived, &ctx, host);
        assert_eq!(files.len(), 3);
        for (path, content) in files {
            let name = snapshot_name(&host.hostname, &path);
            insta::assert_snapshot!(name, content);
        }
    }
}

/// The first network interface of this machine that VRRP can use (not loopback).
fn local_interface() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next().unwrap_or_else(|| {
        panic!("`keepalived -t` needs a non-loopback network interface and this machine has none")
    })
}

/// The example context with `lb_count` lb hosts (the example has 2; more are copies of lb2
/// at the next addresses), each with the `iface` label set to a local interface, since
/// `keepalived -t` refuses interfaces this machine does not have.
fn lb_context(lb_count: usize) -> Context {
    let nic = local_interface();
    let mut ctx = example_context(Keepalived.secret_names());
    let mut inv = (*ctx.inventory).clone();
    let lb2 = inv
        .hosts
        .iter()
        .find(|h| h.hostname == "lb2")
        .cloned()
        .expect("the example has lb2");
    for n in 3..=lb_count {
        let mut h = lb2.clone();
        h.hostname = format!("lb{n}");
        h.ip = format!("192.0.2.{}", 10 + n).parse().expect("address");
        h.line = lb2.line + n;
        inv.hosts.push(h);
    }
    for h in inv.hosts.iter_mut().filter(|h| h.has(Role::Lb)) {
        h.labels.insert("iface".into(), nic.clone());
    }
    ctx.inventory = std::sync::Arc::new(inv);
    ctx
}

/// `keepalived -t -f PATH`: keepalived's own config test.
fn keepalived_test(bin: &std::path::Path, path: &std::path::Path) -> std::process::Output {
    Command::new(bin)
        .arg("-t")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run keepalived -t")
}

#[test]
fn keepalived_accepts_the_rendered_config() {
    let bin = require_tool("keepalived", "keepalived");
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "`keepalived -t` checks `script_user root` and the track script's ownership, which only \
         works as root: run the tests as root (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // 2 lb hosts (the example: no majority to lose, no chk_peers) and 3 (chk_peers).
    for lb_count in [2, 3] {
        let ctx = lb_context(lb_count);
        let lbs = ctx.inventory.with_role(Role::Lb);
        assert_eq!(lbs.len(), lb_count);
        for host in lbs {
            let files = present_files(&Keepalived, &ctx, host);
            let (_, conf) = files.iter().find(|(p, _)| p == CONFIG_PATH).expect("conf");
            assert!(conf.contains(CHECK_SCRIPT_PATH));
            let peers_line = conf.lines().find(|l| l.contains(PEERS_SCRIPT_PATH));
            if lb_count >= 3 {
                let line = peers_line.expect("chk_peers with 3 lb hosts");
                assert!(line.contains(" 2 192.0.2."), "quorum 2 of 3: {line}");
                assert_eq!(
                    conf.matches("        chk_peers").count(),
                    ctx.config.vips.len()
                );
            } else {
                assert!(peers_line.is_none(), "chk_peers with 2 lb hosts:\n{conf}");
            }
            // The track scripts must exist for the test; they live in the temporary directory.
            let mut conf = conf.clone();
            for path in [CHECK_SCRIPT_PATH, PEERS_SCRIPT_PATH] {
                let (_, text) = files.iter().find(|(p, _)| p == path).expect("script");
                let name = path.rsplit('/').next().expect("file name");
                let script = dir
                    .path()
                    .join(format!("{}-{lb_count}-{name}", host.hostname));
                std::fs::write(&script, text).expect("write script");
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod script");
                conf = conf.replace(path, &script.display().to_string());
            }
            let path = dir
                .path()
                .join(format!("{}-{lb_count}-keepalived.conf", host.hostname));
            std::fs::write(&path, &conf).expect("write conf");
            let out = keepalived_test(&bin, &path);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "keepalived -t rejected {}'s config ({}):\n{stderr}\n{conf}",
                host.hostname,
                out.status
            );
        }
    }
}

/// A network namespace of the test's own with only `lo` up, removed on drop (also when the
/// test fails): in it, loopback answers pings and every other address is unreachable without
/// a packet leaving the machine.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("kbz-peers-{}", std::process::id());
        let ip = require_tool("ip", "iproute2");
        let ok = |args: &[&str]| {
            let out = Command::new(&ip).args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["netns", "add", &name]);
        let ns = Netns(name);
        ok(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs the peers script in the namespace; its exit status.
    fn check(&self, script: &std::path::Path, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "sh"])
            .arg(script)
            .args(args)
            .status()
            .expect("run the script")
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn chk_peers_passes_only_with_a_majority() {
    require_tool("ping", "iputils-ping");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("kbz_check_peers.sh");
    std::fs::write(&script, Keepalived::peers_script()).expect("write script");
    let ns = Netns::new();
    // 10.255.255.1 has no route in the namespace: unreachable, like a partitioned peer.
    assert!(
        ns.check(&script, &["2", "127.0.0.1", "10.255.255.1"]),
        "2 of 3 up"
    );
    assert!(
        ns.check(&script, &["2", "127.0.0.1", "127.0.0.2"]),
        "3 of 3 up"
    );
    assert!(
        !ns.check(&script, &["2", "10.255.255.1", "10.255.255.2"]),
        "cut off from both peers, it must fail"
    );
    assert!(
        !ns.check(
            &script,
            &[
                "3",
                "127.0.0.1",
                "10.255.255.1",
                "10.255.255.2",
                "10.255.255.3"
            ]
        ),
        "2 of 5 is not a majority"
    );
    assert!(
        ns.check(
            &script,
            &[
                "3",
                "127.0.0.1",
                "127.0.0.2",
                "10.255.255.2",
                "10.255.255.3"
            ]
        ),
        "3 of 5 is"
    );
}

#[test]
fn keepalived_test_mode_catches_errors() {
    // The validator must really validate: a broken file fails.
    let bin = require_tool("keepalived", "keepalived");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "vrrp_instance x {\n  interface nosuch0\n  virtual_router_id 300\n}\n",
    )
    .expect("write");
    let out = keepalived_test(&bin, &path);
    assert!(
        !out.status.success(),
        "keepalived -t accepted a broken file"
    );
}
