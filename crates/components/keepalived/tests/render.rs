//! Rendered files for the example inventory: insta snapshots of every file, and keepalived's
//! own config test (`keepalived -t -f`) on the rendered keepalived.conf.

use kbz_core::{Component, Host, Role};
use kbz_keepalived::{Keepalived, CHECK_SCRIPT_PATH, CONFIG_PATH};
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
        assert_eq!(files.len(), 2);
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
    // `keepalived -t` refuses interfaces this machine does not have, so the lb hosts get the
    // `iface` label with a local interface; the rest of the file is what lb1 and lb2 get.
    let nic = local_interface();
    let mut ctx = example_context(Keepalived.secret_names());
    let mut inv = (*ctx.inventory).clone();
    for h in inv.hosts.iter_mut().filter(|h| h.has(Role::Lb)) {
        h.labels.insert("iface".into(), nic.clone());
    }
    ctx.inventory = std::sync::Arc::new(inv);
    let dir = tempfile::tempdir().expect("tempdir");
    for host in ctx.inventory.with_role(Role::Lb) {
        let files = present_files(&Keepalived, &ctx, host);
        let script = dir.path().join(format!("{}-check", host.hostname));
        let (_, script_text) = files
            .iter()
            .find(|(p, _)| p == CHECK_SCRIPT_PATH)
            .expect("track script");
        std::fs::write(&script, script_text).expect("write script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod script");
        let (_, conf) = files.iter().find(|(p, _)| p == CONFIG_PATH).expect("conf");
        assert!(conf.contains(CHECK_SCRIPT_PATH));
        // The track script must exist for the test; it lives in the temporary directory.
        let conf = conf.replace(CHECK_SCRIPT_PATH, &script.display().to_string());
        let path = dir
            .path()
            .join(format!("{}-keepalived.conf", host.hostname));
        std::fs::write(&path, &conf).expect("write conf");
        let out = Command::new(&bin)
            .arg("-t")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run keepalived -t");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "keepalived -t rejected {}'s config ({}):\n{stderr}\n{conf}",
            host.hostname,
            out.status
        );
    }
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
    let out = Command::new(&bin)
        .arg("-t")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run keepalived -t");
    assert!(
        !out.status.success(),
        "keepalived -t accepted a broken file"
    );
}
