//! The member certificates in `STATE_DIR/tls` are written by a real install only, the one
//! run that pushes them. The lab's e2e once ran kbz-backup against an inventory in which
//! the backup host's address was edited (its "unreachable repository" check): the run
//! re-issued that host's certificate for the new address and saved it, and the next look
//! at the cluster found the host drifted (its etcd and PostgreSQL certificates "changed").
//! Here, on the example fleet with `[security] tls = true` and hosts that refuse SSH:
//! kbz-backup and an install dry-run with db1's address changed leave every stored file of
//! `STATE_DIR/tls` as it was; a real install with that inventory re-issues db1's
//! certificate (the control that shows the check can see a change).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Each file of `STATE_DIR/tls` with a digest of its content (keys stay out of the
/// assertion messages).
fn tls_files(state: &Path) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(state.join("tls"))
        .expect("tls dir")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(e.path()).expect("read").hash(&mut h);
        out.insert(name, h.finish());
    }
    out
}

fn run(bin: &Path, dir: &Path, inv: &str, args: &[&str]) {
    let o = Command::new(bin)
        .arg("--inventory")
        .arg(dir.join(inv))
        .arg("--config")
        .arg(dir.join("kbz.toml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .output()
        .expect("run");
    // The hosts refuse SSH: the runs fail, and that is not what is checked here.
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn only_a_real_install_writes_member_certificates() {
    let bins = kbz_tests::built(&["kbz-install", "kbz-backup"]);
    let (install, backup) = (&bins[0], &bins[1]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    std::fs::write(
        dir.path().join("servers.tsv"),
        kbz_tests::loopback_inventory(port, |_| None),
    )
    .expect("inv");
    std::fs::write(
        dir.path().join("moved.tsv"),
        kbz_tests::loopback_inventory(port, |h| (h == "db1").then(|| "127.0.0.99".into())),
    )
    .expect("inv");
    let cfg = kbz_tests::loopback_config();
    std::fs::write(
        dir.path().join("kbz.toml"),
        format!("{cfg}\n[security]\ntls = true\n"),
    )
    .expect("config");

    // The first real install makes the CA and every member's certificate.
    run(install, dir.path(), "servers.tsv", &["--yes"]);
    let before = tls_files(&dir.path().join("state"));
    assert!(
        before.contains_key("db1.crt") && before.contains_key("ca.key"),
        "{:?}",
        before.keys()
    );

    run(backup, dir.path(), "moved.tsv", &["list", "--json"]);
    run(backup, dir.path(), "moved.tsv", &["run", "--json"]);
    run(install, dir.path(), "moved.tsv", &["--dry-run"]);
    assert_eq!(tls_files(&dir.path().join("state")), before);

    run(install, dir.path(), "moved.tsv", &["--yes"]);
    let after = tls_files(&dir.path().join("state"));
    assert_ne!(after["db1.crt"], before["db1.crt"]);
    assert_eq!(after["db2.crt"], before["db2.crt"]);
    assert_eq!(after["ca.crt"], before["ca.crt"]);
}
