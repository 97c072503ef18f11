//! The lab leaves nothing behind: `lab up --hosts 2`, reach the hosts and each other over the
//! bridge, `lab down`, then no namespace, link, mount or process of the lab remains.
//! Needs root (CI runs as root); it waits for the lab session lock so it never shares the lab.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The machine-wide lab lock (one lab per machine, whatever checkout it comes from).
const MACHINE_LOCK: &str = "/tmp/kbz-lab.lock";

fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/lab")
}

fn xtask(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask");
    eprintln!(
        "$ xtask {}\n{}{}-> {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tears the lab down if the test fails half-way, so one failure does not poison later runs.
struct DownOnDrop;

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = xtask(&["lab", "down"]);
        }
    }
}

/// What the lab recorded, read from its state file while it is up.
#[derive(Debug, Default)]
struct Recorded {
    netns: Vec<String>,
    links: Vec<String>,
    dirs: Vec<String>,
    pids: Vec<(u64, u64)>,
}

fn recorded(state: &serde_json::Value) -> Recorded {
    let mut r = Recorded::default();
    r.links.push(state["bridge"].as_str().unwrap().to_string());
    let pid = |v: &serde_json::Value| {
        (
            v["pid"].as_u64().unwrap(),
            v["start_time"].as_u64().unwrap(),
        )
    };
    if !state["apt_cacher_ng"].is_null() {
        r.pids.push(pid(&state["apt_cacher_ng"]));
    }
    for h in state["hosts"].as_array().unwrap() {
        r.netns.push(h["netns"].as_str().unwrap().to_string());
        r.links.push(h["veth"].as_str().unwrap().to_string());
        r.dirs.push(h["dir"].as_str().unwrap().to_string());
        r.pids.push(pid(&h["nspawn"]));
        r.pids.push(pid(&h["leader"]));
    }
    r
}

/// True if that process (same pid and start time) still exists and is not a zombie.
fn alive(pid: u64, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[0] != "Z" && fields[19].parse::<u64>().unwrap() == start_time
}

#[test]
fn lab_up_reach_down_leaves_nothing_behind() {
    let uid = sh("id -u");
    assert_eq!(uid.trim(), "0", "the lab test needs root (CI runs as root)");

    // The lab's bridge, namespaces and addresses are machine-wide, so a lab test in another
    // checkout of kbz would collide with this one: wait for the machine-wide lab lock that
    // scripts driving the lab hold (`flock /tmp/kbz-lab.lock ...`) for the whole test.
    let machine = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .unwrap();
    if machine.try_lock().is_err() {
        eprintln!("lab test: waiting for {MACHINE_LOCK} (another lab user holds it)");
        machine.lock().unwrap();
    }

    let dir = lab_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("session.lock"))
        .unwrap();
    lock.lock().unwrap();
    assert!(
        !dir.join("state.json").exists(),
        "a lab is already up ({}); run `cargo xtask lab down` first",
        dir.join("state.json").display()
    );

    // With nothing up, down is a no-op success.
    assert!(xtask(&["lab", "down"]).status.success());

    let up = xtask(&["lab", "up", "--hosts", "2"]);
    let _guard = DownOnDrop;
    assert!(up.status.success(), "lab up failed");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let rec = recorded(&state);
    assert_eq!(rec.netns, ["kbzlab-h1", "kbzlab-h2"]);

    // A second lab is refused while this one is up.
    let again = xtask(&["lab", "up", "--hosts", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));

    // The generated files.
    let tsv = std::fs::read_to_string(dir.join("servers.tsv")).unwrap();
    assert!(tsv.starts_with("hostname\tip\troles\tssh_user\tssh_port\n"));
    assert!(
        tsv.contains("kbzlab-h2\t10.77.0.12\tlb,etcd,postgres,redis,rabbitmq,mariadb\troot\t22\n")
    );
    let toml = std::fs::read_to_string(dir.join("kbz.toml")).unwrap();
    assert!(toml.contains("apt_proxy = \"http://10.77.0.1:3142\""));
    let known_hosts = std::fs::read_to_string(dir.join("known_hosts")).unwrap();

    // A command on a host, with its exit code passed through.
    let hostname = xtask(&["lab", "exec", "kbzlab-h1", "--", "hostname"]);
    assert!(hostname.status.success());
    assert_eq!(stdout(&hostname), "kbzlab-h1");
    assert_eq!(
        xtask(&["lab", "exec", "h2", "--", "exit", "7"])
            .status
            .code(),
        Some(7)
    );

    // Host to host over the bridge: ping, and h2's sshd answers h1 with the host key that
    // known_hosts holds for it.
    let h2 = Ipv4Addr::new(10, 77, 0, 12);
    let ping = xtask(&[
        "lab",
        "exec",
        "h1",
        "--",
        "ping",
        "-c1",
        "-W2",
        &h2.to_string(),
    ]);
    assert!(ping.status.success(), "h1 cannot ping h2");
    let scan = xtask(&[
        "lab",
        "exec",
        "h1",
        "--",
        "ssh-keyscan",
        "-t",
        "ed25519",
        "kbzlab-h2",
    ]);
    assert!(scan.status.success(), "h1 cannot reach h2's sshd");
    let key = stdout(&scan).split_whitespace().nth(2).unwrap().to_string();
    assert!(
        known_hosts.contains(&format!("{h2} ssh-ed25519 {key}")),
        "h2's host key is not the one in known_hosts"
    );

    // The apt proxy answers on the bridge address from inside a host.
    let proxy = xtask(&[
        "lab",
        "exec",
        "h2",
        "--",
        "python3 -c \"import socket; socket.create_connection(('10.77.0.1', 3142), 5)\"",
    ]);
    assert!(
        proxy.status.success(),
        "the apt proxy is not reachable from h2"
    );

    assert!(xtask(&["lab", "status"]).status.success());

    // Down, then nothing of the lab is left.
    let down = xtask(&["lab", "down"]);
    assert!(down.status.success(), "lab down failed");
    assert!(!dir.join("state.json").exists());

    let netns = sh("ip netns list");
    for ns in &rec.netns {
        assert!(
            !netns
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "netns {ns} left: {netns}"
        );
    }
    let links = sh("ip -o link show");
    for l in &rec.links {
        assert!(
            !links.contains(&format!(": {l}:")) && !links.contains(&format!(": {l}@")),
            "link {l} left: {links}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    for m in mounts.lines() {
        let point = m.split(' ').nth(1).unwrap_or("");
        assert!(!point.contains("kbzlab"), "mount left: {m}");
        for d in &rec.dirs {
            assert!(!point.starts_with(d.as_str()), "mount left: {m}");
        }
    }
    for &(pid, start) in &rec.pids {
        assert!(!alive(pid, start), "process {pid} left");
    }
    for d in &rec.dirs {
        assert!(!Path::new(d).exists(), "host dir {d} left");
    }

    // Down again: still a no-op success.
    assert!(xtask(&["lab", "down"]).status.success());
}
