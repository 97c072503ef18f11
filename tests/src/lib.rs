//! Cross-crate integration tests live in tests/. This library holds what several of them
//! need: building the workspace's binaries, and the example fleet moved onto loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the binaries (a test may run before they are built) and returns their paths,
/// next to the running test's own target directory.
pub fn built(bins: &[&str]) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").current_dir(root());
    for b in bins {
        cmd.args(["-p", b]);
    }
    let o = cmd.output().expect("cargo build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The test executable lives in target/<profile>/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    bins.iter()
        .map(|b| {
            let p = dir.join(b);
            assert!(p.exists(), "{} not built", p.display());
            p
        })
        .collect()
}

/// The example inventory (`examples/servers.tsv`) with every host on `127.0.0.N` (N the
/// last octet of its example address, or what `address` returns for its hostname) and SSH
/// on `port` as root.
pub fn loopback_inventory(port: u16, address: impl Fn(&str) -> Option<String>) -> String {
    let example = std::fs::read_to_string(root().join("examples/servers.tsv")).expect("example");
    let mut inv = String::from("hostname\tip\troles\tssh_user\tssh_port\tlabels\n");
    for l in example.lines() {
        let cols: Vec<&str> = l.split('\t').collect();
        if cols.len() < 3 || l.starts_with('#') || cols[0] == "hostname" {
            continue;
        }
        let last = cols[1].rsplit('.').next().expect("octet");
        let ip = address(cols[0]).unwrap_or_else(|| format!("127.0.0.{last}"));
        inv.push_str(&format!("{}\t{ip}\t{}\troot\t{port}\t\n", cols[0], cols[2]));
    }
    inv
}

/// The example kbz.toml for [`loopback_inventory`]: VIPs on loopback, a 2 s SSH connect
/// timeout.
pub fn loopback_config() -> String {
    std::fs::read_to_string(root().join("examples/kbz.toml"))
        .expect("example config")
        .replace("192.0.2.", "127.0.0.")
        .replace("[timeouts]\nconnect = 10", "[timeouts]\nconnect = 2")
}
