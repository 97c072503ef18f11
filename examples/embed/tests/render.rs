//! The rendered drop-in checked by systemd's own validator: Debian's packaged unit plus the
//! drop-in, next to each other in a temporary unit directory, pass `systemd-analyze verify`;
//! the same drop-in without its `ExecStart=` reset is refused (so the drop-in is really read).
//! Needs `systemd-analyze` (package systemd) and the packaged unit and binary (package
//! prometheus-node-exporter, which .ci/run installs); a missing one fails with its apt line.

use kbz_core::{Context, Host, Resource};
use kbz_embed_example::{dropin, NodeExporter, DROPIN_FILE, SERVICE};
use kbz_testkit::require_tool;
use std::path::Path;
use std::process::Command;

const PACKAGED_UNIT: &str = "/lib/systemd/system/prometheus-node-exporter.service";

/// `systemd-analyze verify` of the packaged unit with `dropin` as its only drop-in.
fn verify(dropin: &str) -> (bool, String) {
    let analyze = require_tool("systemd-analyze", "systemd");
    require_tool("prometheus-node-exporter", "prometheus-node-exporter");
    let unit = std::fs::read_to_string(PACKAGED_UNIT).unwrap_or_else(|e| {
        panic!(
            "cannot read {PACKAGED_UNIT} ({e}): install it with `apt-get install -y prometheus-node-exporter` (.ci/run does)"
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let unit_path = dir.path().join(format!("{SERVICE}.service"));
    std::fs::write(&unit_path, unit).expect("unit");
    let dropin_name = Path::new(DROPIN_FILE).file_name().expect("name");
    let d = dir.path().join(format!("{SERVICE}.service.d"));
    std::fs::create_dir(&d).expect("drop-in dir");
    std::fs::write(d.join(dropin_name), dropin).expect("drop-in");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit_path)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_rendered_dropin_passes_systemd_analyze_verify() {
    let host = Host::new("node1", "10.0.0.11".parse().expect("ip"), &[]);
    let ctx = Context::new(
        kbz_core::Inventory {
            path: "servers.tsv".into(),
            hosts: vec![host.clone()],
        },
        kbz_core::Config::default(),
        kbz_core::Secrets::in_memory(),
    );
    // The file the component declares is the one verified.
    let declared = kbz_core::Component::desired(&NodeExporter, &ctx, &host)
        .expect("desired")
        .into_iter()
        .find_map(|r| match r {
            Resource::File { path, content, .. } if path == DROPIN_FILE => Some(content),
            _ => None,
        })
        .expect("the drop-in is declared");
    let text = String::from_utf8(declared).expect("utf8");
    assert_eq!(text, dropin(&host).expect("render"));
    let (ok, out) = verify(&text);
    assert!(
        ok,
        "systemd-analyze verify refused the drop-in:\n{out}\n{text}"
    );

    // Without the reset, the unit has two ExecStart= lines: systemd refuses it, which shows
    // the verification above read the drop-in.
    let broken = text.replace("ExecStart=\n", "");
    let (ok, out) = verify(&broken);
    assert!(!ok, "a drop-in with two ExecStart= lines passed:\n{out}");
    assert!(out.contains("more than one ExecStart="), "{out}");
}
