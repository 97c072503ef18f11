//! The example binary's input handling, without any host: a missing inventory is exit 64 with
//! the inventory's E-code, `--help` names every option, and an input problem changes nothing
//! in the state directory.

use std::process::Command;

fn example(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kbz-embed-example"))
        .args(args)
        .output()
        .expect("run kbz-embed-example")
}

#[test]
fn help_names_every_option() {
    let out = example(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--inventory",
        "--state-dir",
        "--dry-run",
        "--uninstall",
        "--json",
        "--health",
    ] {
        assert!(text.contains(opt), "{opt} missing from --help:\n{text}");
    }
}

#[test]
fn a_missing_inventory_is_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let inv = dir.path().join("servers.tsv");
    let out = example(&[
        "--inventory",
        inv.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let d: serde_json::Value =
        serde_json::from_str(err.lines().next().unwrap_or_default()).expect("a JSON diagnostic");
    assert_eq!(d["code"], kbz_core::errors::Code::E001.to_string(), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout for a failed run");
    assert!(!state.exists(), "the state directory was created");
}

#[test]
fn a_usage_error_is_exit_64() {
    let out = example(&["--state-dir", "x"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}
